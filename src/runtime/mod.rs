//! What runs beside the controllers: leader election ([`leader`]), metrics ([`metrics`]), the
//! health and metrics endpoint ([`http`]), and the shutdown signal they all obey ([`shutdown`]).

pub mod http;
pub mod leader;
pub mod metrics;
pub mod shutdown;
