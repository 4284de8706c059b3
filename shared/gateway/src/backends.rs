//! A BFF's backends, declared once. [`backends!`](crate::backends!) turns one struct of typed
//! clients into everything the core needs from it: the list of `[upstreams.NAME]` sections the
//! config must have (and may not exceed), each client built from its section, and each one's
//! readiness probe. A field's name is its backend's name. Adding a backend to a BFF is its typed
//! client, one line in the declaration, and its config entry.

use crate::health::ReadinessCheck;

/// What the core reads off a BFF's declared backends.
pub trait BackendSet {
    /// Every backend, by its `[upstreams.NAME]`, in declaration order.
    const NAMES: &'static [&'static str];

    /// Each backend's probe, for `/readyz?verbose`.
    fn readiness_checks(&self) -> Vec<ReadinessCheck>;

    /// Where the backends' instances registered their breakers, for the metrics.
    fn health(&self) -> bff_upstream::HealthRegistry {
        bff_upstream::HealthRegistry::default()
    }
}

/// Declares a BFF's backends: `backends! { pub struct Backends { users: UsersClient, ... } }`.
/// Each client type has `new(&UpstreamConfig) -> Result<Self, UpstreamError>`, and implements
/// [`Probe`](bff_upstream::Probe) and `Clone`.
#[macro_export]
macro_rules! backends {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$field_meta:meta])* $field:ident : $client:ty),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone)]
        $vis struct $name {
            $($(#[$field_meta])* pub $field: $client,)+
            #[doc(hidden)]
            pub __health: $crate::__private::HealthRegistry,
        }

        impl $name {
            /// Each backend's client, from its `[upstreams.NAME]` section.
            pub fn new(upstreams: &$crate::config::Upstreams) -> ::std::result::Result<Self, $crate::__private::UpstreamError> {
                // Every instance's breaker is registered here, for this BFF's metrics.
                let health = $crate::__private::HealthRegistry::default();
                let mut upstreams = upstreams.clone();
                upstreams.report_health_to(&health);
                Ok(Self { $($field: <$client>::new(upstreams.get(stringify!($field))?)?,)+ __health: health })
            }
        }

        impl $crate::backends::BackendSet for $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];

            fn readiness_checks(&self) -> ::std::vec::Vec<$crate::health::ReadinessCheck> {
                ::std::vec![$($crate::health::ReadinessCheck::new(stringify!($field), ::std::sync::Arc::new(self.$field.clone())),)+]
            }

            fn health(&self) -> $crate::__private::HealthRegistry {
                self.__health.clone()
            }
        }
    };
}
