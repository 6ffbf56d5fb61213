//! Proves libtorch links and runs on this machine: a small autograd computation on CPU.
use tch::{Device, Kind, Tensor};

#[test]
fn autograd_on_cpu() -> anyhow::Result<()> {
    // y = sum(w * x^2) => dy/dw = x^2, dy/dx = 2 w x
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).set_requires_grad(true);
    let w = Tensor::from_slice(&[0.5f32, -1.0, 2.0]).set_requires_grad(true);
    let y = (&w * &x * &x).sum(Kind::Float);
    y.backward();
    let gx: Vec<f32> = Vec::<f32>::try_from(&x.grad())?;
    let gw: Vec<f32> = Vec::<f32>::try_from(&w.grad())?;
    assert_eq!(gx, vec![1.0, -4.0, 12.0]);
    assert_eq!(gw, vec![1.0, 4.0, 9.0]);
    assert_eq!(y.device(), Device::Cpu);
    Ok(())
}

#[test]
fn cuda_is_seen_exactly_when_a_gpu_is_present() {
    // The build forces libtorch_cuda into the link (host/build.rs); without that libtorch would never see a
    // GPU. With an NVIDIA device node present CUDA must be available; without one it must not be (and the
    // query must not crash although libtorch_cuda is linked in).
    let gpu_present = std::path::Path::new("/dev/nvidia0").exists();
    let available = tch::Cuda::is_available();
    eprintln!("gpu device node: {gpu_present}, cuda available: {available}");
    if std::env::var_os("GLASS_EDGE_NO_CUDA").is_none() {
        assert_eq!(available, gpu_present);
    }
}
