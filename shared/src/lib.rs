#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
#![doc = include_str!("../README.md")]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod preprocess;
pub mod wire;

#[cfg(feature = "std")]
pub mod manifest;

#[cfg(feature = "std")]
pub mod signature;
