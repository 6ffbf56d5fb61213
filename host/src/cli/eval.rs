//! `host eval`: metrics and overlay strips of one or more runs on their test split.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use host::eval::cam::CamMethod;
use host::run::{ComputeDevice, RunDir};
use shared::manifest::ModelKind;

use super::show_progress;

/// `host eval` options.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory written by `host train`. Repeat it (e.g. one run per split seed) to get a
    /// summary table with the mean and standard deviation over the runs.
    #[arg(long, required = true)]
    pub run: Vec<PathBuf>,
    /// Reuse a run's metrics.json when it is newer than its training state instead of evaluating
    /// again.
    #[arg(long)]
    pub reuse: bool,
    /// Where to compute.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: ComputeDevice,
    /// libtorch threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Classifier runs: the CAM weighting.
    #[arg(long, value_enum, default_value = "gradcam")]
    pub cam: CamMethod,
    /// Classifier runs: the CAM layer (default: the run's cam_layer).
    #[arg(long)]
    pub cam_layer: Option<String>,
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}%", 100.0 * x)).unwrap_or_else(|| "n/a".into())
}

/// Runs `host eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let mut all = Vec::with_capacity(a.run.len());
    for run in &a.run {
        all.push(eval_one(&a, run)?);
    }
    if all.len() > 1 {
        print_spread(&all);
    }
    Ok(())
}

/// Mean ± sd over several evaluated runs (e.g. split seeds), one line per metric.
fn print_spread(all: &[host::eval::Metrics]) {
    use host::experiment::seeds::mean_sd;
    let seeds: Vec<String> = all.iter().map(|m| m.run.split_seed.to_string()).collect();
    println!("\n{} runs (split seeds {}):", all.len(), seeds.join(", "));
    println!("  {:<24} {:>18}  per run", "metric", "mean ± sd");
    type Get = fn(&host::eval::Metrics) -> Option<f64>;
    let rows: [(&str, Get); 9] = [
        ("image AUROC", |m| m.image_auroc),
        ("F1 at val threshold", |m| Some(m.f1)),
        ("recall at val threshold", |m| Some(m.recall)),
        ("precision at val thr.", |m| Some(m.precision)),
        ("best F1 (test, oracle)", |m| Some(m.best_f1_test)),
        ("pixel AUROC", |m| m.pixel_auroc),
        ("AUPRO (<=0.3)", |m| m.aupro),
        ("validation image AUROC", |m| m.val_image_auroc),
        ("validation pixel AUROC", |m| m.val_pixel_auroc),
    ];
    for (name, get) in rows {
        let v: Vec<f64> = all.iter().filter_map(get).collect();
        if v.is_empty() {
            println!("  {name:<24} {:>18}", "n/a");
            continue;
        }
        let (m, sd) = mean_sd(&v);
        let per: Vec<String> = v.iter().map(|x| format!("{:.3}", x)).collect();
        println!("  {name:<24} {:>18}  {}", format!("{m:.3} ± {sd:.3}"), per.join(" "));
    }
}

fn eval_one(a: &EvalArgs, run: &std::path::Path) -> anyhow::Result<host::eval::Metrics> {
    let rd = RunDir::open(run).with_context(|| format!("opening run {}", run.display()))?;
    if a.reuse && host::experiment::eval_is_current(&rd, &rd.metrics()) {
        let m: host::eval::Metrics = host::run::read_json(&rd.metrics())?;
        println!("{}: reusing {}", run.display(), rd.metrics().display());
        return Ok(m);
    }
    let kind = host::run::config::run_kind(run)?;
    let m = match kind {
        ModelKind::Glass => host::eval::glass::evaluate(&rd, a.device, a.threads, show_progress()),
        ModelKind::Patchcore => {
            host::eval::patchcore::evaluate(&rd, a.device, a.threads, show_progress())
        }
        ModelKind::Classifier => host::eval::classifier::evaluate(
            &rd,
            a.device,
            a.threads,
            a.cam,
            a.cam_layer.as_deref(),
            show_progress(),
        ),
    }
    .with_context(|| format!("evaluating {}", run.display()))?;
    println!(
        "{} on {} (seed {}): {} normal + {} abnormal test images",
        m.run.arch, m.run.category, m.run.split_seed, m.n_test_normal, m.n_test_abnormal
    );
    println!("  image AUROC      {}", pct(m.image_auroc));
    println!("  pixel AUROC      {}", pct(m.pixel_auroc));
    println!("  AUPRO (<=0.3)    {}", pct(m.aupro));
    println!("  best F1 (test)   {}", pct(Some(m.best_f1_test)));
    println!(
        "  validation: image AUROC {}, pixel AUROC {}",
        pct(m.val_image_auroc),
        pct(m.val_pixel_auroc)
    );
    println!("  at threshold {:.4} chosen on validation (best F1):", m.threshold);
    println!(
        "    accuracy {}  precision {}  recall {}  F1 {}",
        pct(Some(m.accuracy)),
        pct(Some(m.precision)),
        pct(Some(m.recall)),
        pct(Some(m.f1))
    );
    for (k, v) in &m.per_defect_recall {
        let seen = match &m.run.seen_defects {
            Some(s) if s.contains(k) => " (seen in training)",
            Some(_) => " (unseen)",
            None => "",
        };
        println!("    recall {k:<16} {}{seen}", pct(Some(*v)));
    }
    println!("  -> {} and {}/", rd.metrics().display(), rd.maps().display());
    Ok(m)
}
