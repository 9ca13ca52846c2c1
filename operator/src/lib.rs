//! nameplane operator: turns the `nameplane.io` custom resources into one validated
//! [`ServerConfig`](nameplane_config::ServerConfig) per `DNSServer` and publishes it.
//!
//! - [`api`]: the custom resource types, one file per kind (the only place they are defined).
//! - [`crds`]: the CustomResourceDefinitions generated from those types (`crdgen` writes them
//!   to `crds/`).
//! - [`render`]: the one pure function from custom resources to `ServerConfig`.
//! - [`status`]: kstatus conditions (`Ready`, `Reconciling`, `Stalled`) and their bookkeeping.
//! - [`controller`]: the reconcilers that publish rendered configs and write status.

pub mod api;
pub mod controller;
pub mod crds;
pub mod render;
pub mod status;

/// The one field manager the operator uses for every server-side apply.
pub const FIELD_MANAGER: &str = "nameplane-operator";

/// Errors of the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object lacks a field the API server always sets (namespace, name).
    #[error("object is missing {0}")]
    MissingField(&'static str),
    /// Serialising an object for the API failed.
    #[error("serialising: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// A short, stable label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingField(_) => "missing_field",
            Error::Serialize(_) => "serialize",
        }
    }
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
