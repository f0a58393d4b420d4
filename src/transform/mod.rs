//! ImageKit-compatible transformations: the `tr` grammar and typed plan, geometry, the pixel
//! pipeline, and the variant cache that runs it on a bounded blocking pool.

pub mod codec;
pub mod color;
pub mod error;
pub mod expr;
pub mod geometry;
pub mod ops;
pub mod parse;
pub mod pipeline;
pub mod plan;
mod service;
pub mod signing;

pub use error::TransformError;
pub use geometry::{plan_geometry, step_output_size, GeomOp, Limits};
pub use parse::parse_chain;
pub use pipeline::Accepts;
pub use plan::{ClientHints, OutputFormat, Plan, Step};
pub use service::{TransformFailure, Transformer, Variant};
