//! The client address: the connection's peer, or, when the peer is a configured trusted proxy
//! (`[server] trusted_proxies`), the nearest address in `X-Forwarded-For` that is not one. What
//! an untrusted peer writes in that header is ignored, so it cannot pick the address its failed
//! attempts (and, later, its rate limits) are counted against.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use super::stage::RequestStage;
use crate::server::PeerAddr;

/// Most `X-Forwarded-For` entries read: proxy chains are short; a long header is an attack.
const MAX_FORWARDED_HOPS: usize = 16;

/// The address of the client a request is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Sets [`ClientAddr`], trusting `X-Forwarded-For` from `trusted` proxies only.
#[derive(Debug, Clone)]
pub struct ResolveClientAddr(pub Arc<[IpBlock]>);

impl RequestStage for ResolveClientAddr {
    fn apply<B>(&self, request: &mut http::Request<B>) {
        if let Some(PeerAddr(peer)) = request.extensions().get::<PeerAddr>().copied() {
            let client = client_addr(peer.ip(), request.headers(), &self.0);
            request.extensions_mut().insert(ClientAddr(client));
        }
    }
}

fn client_addr(peer: IpAddr, headers: &http::HeaderMap, trusted: &[IpBlock]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|block| block.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    // From the nearest hop outwards: each trusted proxy vouches for the one before it.
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => return client,
        }
    }
    client
}

/// An address or a CIDR block: `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpBlock {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = text.split_once('/').map_or((text, None), |(a, p)| (a, Some(p)));
        let network: IpAddr = address.parse().map_err(|_| format!("`{text}` is not an address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("`{text}` has a bad prefix length"))?
            }
        };
        Ok(Self { network, prefix })
    }
}

impl<'de> Deserialize<'de> for IpBlock {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::Request;
    use axum::response::IntoResponse;
    use tower::{Layer, ServiceExt};

    use super::*;
    use crate::inbound::stage::RequestStageLayer;
    use crate::inbound::stage::testing::get;

    async fn resolved(peer: &str, trusted: &[&str], forwarded: &[(&str, &str)]) -> String {
        let trusted: Arc<[IpBlock]> = trusted.iter().map(|b| b.parse().unwrap_or_else(|e| panic!("{e}"))).collect();
        let mut request = get(forwarded);
        request.extensions_mut().insert(PeerAddr(format!("{peer}:4000").parse().unwrap_or_else(|e| panic!("{e}"))));
        let handler = tower::service_fn(|request: Request| async move {
            let client = request.extensions().get::<ClientAddr>().map(|a| a.0.to_string()).unwrap_or_default();
            Ok::<_, std::convert::Infallible>(client.into_response())
        });
        let response =
            RequestStageLayer::new(ResolveClientAddr(trusted)).layer(handler).oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap_or_default();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn an_untrusted_peer_cannot_choose_its_address() {
        assert_eq!(
            resolved("203.0.113.9", &["10.0.0.0/8"], &[("x-forwarded-for", "198.51.100.1")]).await,
            "203.0.113.9"
        );
    }

    #[tokio::test]
    async fn a_trusted_proxy_vouches_for_the_nearest_untrusted_hop() {
        let chain = [("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.2")];
        assert_eq!(resolved("10.0.0.1", &["10.0.0.0/8"], &chain).await, "203.0.113.7");
        // A hop that is not an address stops the walk at the last one vouched for.
        let junk = [("x-forwarded-for", "not-an-ip, 10.0.0.2")];
        assert_eq!(resolved("10.0.0.1", &["10.0.0.0/8"], &junk).await, "10.0.0.2");
    }

    #[test]
    fn blocks_parse_and_match_v4_v6_and_mapped_addresses() {
        let block: IpBlock = "10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(block.contains("10.200.1.1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(block.contains("::ffff:10.1.2.3".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!block.contains("11.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!("10.0.0.0/33".parse::<IpBlock>().is_err());
        assert!("2001:db8::/129".parse::<IpBlock>().is_err());
    }
}
