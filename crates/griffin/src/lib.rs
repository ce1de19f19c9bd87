//! Griffin and Hawk (De et al., "Griffin: Mixing Gated Linear Recurrences with Local Attention for
//! Efficient Language Models", arXiv 2402.19427), loading RecurrentGemma checkpoints (HF
//! `model_type: recurrent_gemma`).
//!
//! Read top to bottom as the paper: [`config`], the layers ([`rms_norm`], [`mlp`], [`conv1d`],
//! [`rg_lru`], [`recurrent_block`], [`local_attention`], [`residual_block`]), the [`model`], its
//! decoding [`state`], [`loading`] and [`generation`]. Hawk is the same model with every block
//! recurrent (`block_types = ["recurrent"]`).
//!
//! Prefill runs the RG-LRU over the whole prompt at once on the `kernels` linear scan; decoding
//! steps one token from a state of fixed size (conv inputs, RG-LRU state, a ring of `window`
//! keys/values per attention layer).
pub mod config;
pub mod conv1d;
pub mod error;
pub mod generation;
pub mod loading;
pub mod local_attention;
pub mod mlp;
pub mod model;
pub mod recurrent_block;
pub mod residual_block;
pub mod rg_lru;
pub mod rms_norm;
pub mod state;
pub mod step;

pub use config::{BlockType, Config};
pub use error::{GriffinError, Result};
pub use loading::load;
pub use model::{Model, MAX_POSITIONS};
pub use state::State;
