//! What runs beside the controllers: leader election ([`leader`]), metrics ([`metrics`]) and
//! the health and metrics endpoint ([`http`]).

pub mod http;
pub mod leader;
pub mod metrics;
