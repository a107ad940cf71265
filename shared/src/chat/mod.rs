//! One view of an LLM request for every policy.
//!
//! - [`path`]: which requests are chat requests — one normalisation of the path and one table of APIs
//!   ([`Routes::classify`]), so no two filters can disagree (a request one skips and the next proxies
//!   would get past the guard);
//! - [`walk`]: every text the model reads, with its JSON pointer, role and [`Kind`], for each request
//!   shape ([`openai`], [`anthropic`]; a new provider's shape is one more module);
//! - [`edit`]: writing rewritten texts back, JSON inside strings kept valid;
//! - [`estimate`]: the prompt-token estimate, over the walker's texts;
//! - [`validate`]: the shape checks, with the JSON path of the first problem.
//!
//! Pure: no proxy-wasm, tested natively and on wasm32.

mod anthropic;
pub mod edit;
pub mod estimate;
mod openai;
pub mod path;
pub mod validate;
pub mod walk;

pub use edit::Edit;
pub use path::{classify, normalize, Api, Class, RouteError, Routes};
pub use walk::{texts, Kind, Text};
