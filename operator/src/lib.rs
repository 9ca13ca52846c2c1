//! nameplane operator: turns the `nameplane.io` custom resources into one validated
//! [`ServerConfig`](nameplane_config::ServerConfig) per `DNSServer` and publishes it.
//!
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`api`]: the custom resource types, one file per kind (the only place they are defined).
//! - [`crds`]: the CustomResourceDefinitions generated from those types (`crdgen` writes them
//!   to `crds/`).
//! - [`import`]: `nameplane import`, a CoreDNS Corefile or kube-dns ConfigMap turned into
//!   these custom resources.
//! - [`namespaces`]: the allow-list of namespaces that may hold `DNSServer`s.
//! - [`pods`]: DNS Pods shaped like cluster DNS: kubeadm's CoreDNS defaults, the dedicated
//!   `DNSServer` fields that replace them, and the `podTemplate` override merged last.
//! - [`scaling`]: the replica count: `spec.replicas` (the `/scale` subresource's), or the
//!   proportional count computed from the Nodes.
//! - [`render`]: the one pure function from custom resources to `ServerConfig`.
//! - [`serving`]: whether a `DNSServer`'s Pods serve its published config (their `/ready`),
//!   the evidence behind its `Ready`.
//! - [`status`]: kstatus conditions (`Ready`, `Reconciling`, `Stalled`) and their bookkeeping.
//! - [`workload`]: the Kubernetes objects that run one `DNSServer` (ServiceAccount, bindings
//!   to the shipped read-only ClusterRoles, Role, Deployment, Service, PodDisruptionBudget),
//!   built as pure functions.
//! - [`controller`]: the reconcilers that publish rendered configs, apply the workload and
//!   write status.

pub mod admin;
pub mod api;
pub mod apply;
pub mod controller;
pub mod crds;
pub mod import;
pub mod metrics;
pub mod namespaces;
pub mod pods;
pub mod render;
pub mod scaling;
pub mod serving;
pub mod status;
pub mod values_schema;
pub mod workload;

/// The one field manager the operator uses for every server-side apply.
pub const FIELD_MANAGER: &str = "nameplane-operator";

/// Label put on every object the operator writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

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
    /// Adding or removing the cleanup finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Whether the API refused a write because the object changed since it was read: 409
    /// Conflict, or 422 from the finalizer patch whose `test` of the old finalizer list no
    /// longer holds.
    pub fn is_stale_object(&self) -> bool {
        use kube::runtime::finalizer::Error as Finalizer;
        let code = |e: &kube::Error| match e {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        };
        match self {
            Error::Kube(e) => code(e) == Some(409),
            Error::Finalizer(f) => match f.as_ref() {
                Finalizer::AddFinalizer(e) | Finalizer::RemoveFinalizer(e) => {
                    matches!(code(e), Some(409) | Some(422))
                }
                Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => {
                    inner.is_stale_object()
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingField(_) => "missing_field",
            Error::Serialize(_) => "serialize",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
