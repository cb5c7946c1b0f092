//! Outbound HTTP to tenants' webhook receivers: the SSRF guard, Standard Webhooks signing,
//! and the sealing of endpoint secrets at rest.
//!
//! A receiver URL is the tenant's input, and the server sits inside the operator's network,
//! so every address it would connect to is checked: loopback, private, link-local (cloud
//! metadata lives at 169.254.169.254), carrier-grade NAT, multicast and reserved ranges are
//! refused unless `WEBHOOK_ALLOWED_CIDRS` lets them through. The check runs when an endpoint
//! is created and again on every connection, in the resolver the HTTP client uses, so a DNS
//! answer that changes after creation cannot reach an internal address; redirects are not
//! followed (a 3xx is a failed attempt).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use rand::RngCore;
use sha2::Sha256;
use url::Url;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Whether an address is one a tenant's receiver may have.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allowed: Vec<IpNet>,
}

impl AddressGuard {
    pub fn new(allowed: Vec<IpNet>) -> AddressGuard {
        AddressGuard { allowed }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allowed.iter().any(|n| n.contains(&ip)) || is_public(ip)
    }

    /// Checks a receiver URL: scheme, no credentials, and every address its host resolves
    /// to. Returns why it is refused.
    pub async fn check_url(&self, raw: &str) -> Result<Url, String> {
        let url = Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("must be an http or https URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials".into());
        }
        let host = url.host_str().ok_or("must name a host")?.to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs = resolve(&host, port).await?;
        if let Some(bad) = addrs.iter().find(|a| !self.permits(a.ip())) {
            return Err(format!(
                "resolves to {}, a loopback, private, link-local or reserved address \
                 (WEBHOOK_ALLOWED_CIDRS lets private receivers through)",
                bad.ip()
            ));
        }
        Ok(url)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is checked as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Globally routable unicast, by the IANA special-purpose registries.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || (first == 0x0064 && v6.segments()[1] == 0xff9b)) // NAT64
        }
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{host} does not resolve ({e})"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} does not resolve"));
    }
    Ok(addrs)
}

/// The HTTP client's resolver: only permitted addresses are ever connected to.
struct GuardedResolver(Arc<AddressGuard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve(&host, 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let permitted: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| guard.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(format!("{host} resolves only to refused addresses").into());
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What one delivery attempt got back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// The start of the receiver's answer, or why there was none.
    pub excerpt: String,
    pub error: Option<String>,
    pub latency: Duration,
}

impl Reply {
    /// An attempt that got no answer, and why.
    pub fn failed(error: String, latency: Duration) -> Reply {
        Reply {
            status: None,
            retry_after: None,
            excerpt: String::new(),
            error: Some(error),
            latency,
        }
    }
}

/// How much of a receiver's answer is kept in the delivery log.
const EXCERPT_BYTES: usize = 1024;

/// Sends signed requests to receivers, through the guard.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    guard: Arc<AddressGuard>,
}

impl Outbound {
    pub fn new(guard: AddressGuard, timeout: Duration) -> anyhow::Result<Outbound> {
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            .user_agent(concat!("preflight-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Outbound { client, guard })
    }

    pub fn guard(&self) -> &AddressGuard {
        &self.guard
    }

    /// POSTs `body` to `url` with the Standard Webhooks headers, signed with every secret
    /// of `secrets` (two while a rotation overlaps).
    pub async fn send(&self, url: &str, id: &str, body: &[u8], secrets: &[Vec<u8>]) -> Reply {
        let started = std::time::Instant::now();
        let failed = |error: String| Reply::failed(error, started.elapsed());
        // The resolver sees host names only; a literal address is checked here.
        let url = match Url::parse(url) {
            Ok(u) => u,
            Err(e) => return failed(format!("not a URL ({e})")),
        };
        if let Some(url::Host::Ipv4(ip)) = url.host() {
            if !self.guard.permits(IpAddr::V4(ip)) {
                return failed(format!("{ip} is a refused address"));
            }
        }
        if let Some(url::Host::Ipv6(ip)) = url.host() {
            if !self.guard.permits(IpAddr::V6(ip)) {
                return failed(format!("{ip} is a refused address"));
            }
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = secrets
            .iter()
            .map(|s| format!("v1,{}", sign(s, id, timestamp, body)))
            .collect::<Vec<_>>()
            .join(" ");
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Err(e) => failed(describe(&e)),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let bytes = response.bytes().await.unwrap_or_default();
                let cut = &bytes[..bytes.len().min(EXCERPT_BYTES)];
                Reply {
                    status: Some(status),
                    retry_after,
                    excerpt: String::from_utf8_lossy(cut).into_owned(),
                    error: None,
                    latency: started.elapsed(),
                }
            }
        }
    }
}

/// The error of a failed request without its URL's query (which could hold a token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

/// The Standard Webhooks signature: base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    B64.encode(mac.finalize().into_bytes())
}

/// A fresh endpoint secret, `whsec_` and 24 random bytes in base64.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", B64.encode(bytes))
}

/// The key bytes of a `whsec_` secret.
pub fn secret_bytes(secret: &str) -> Option<Vec<u8>> {
    B64.decode(secret.strip_prefix("whsec_")?).ok()
}

/// Seals endpoint secrets for storage (XChaCha20-Poly1305 under a key derived from
/// `API_KEY_SALT`), so a copy of the database alone does not let anyone sign as us.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    pub fn new(master: &str) -> Sealer {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(b"preflight webhook endpoint secrets v1");
        let key = mac.finalize().into_bytes();
        Sealer {
            cipher: XChaCha20Poly1305::new(&key),
        }
    }

    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plain.as_bytes())
            .expect("encryption of a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        B64.encode(out)
    }

    /// `None` when it was sealed under another key or altered.
    pub fn open(&self, sealed: &str) -> Option<String> {
        let bytes = B64.decode(sealed).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, data) = bytes.split_at(24);
        let plain = self.cipher.decrypt(XNonce::from_slice(nonce), data).ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let guard = AddressGuard::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "ff02::1",
        ] {
            assert!(!guard.permits(bad.parse().unwrap()), "{bad} permitted");
        }
        for good in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
        ] {
            assert!(guard.permits(good.parse().unwrap()), "{good} refused");
        }
        let allowed = AddressGuard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(allowed.permits("127.0.0.1".parse().unwrap()));
        assert!(!allowed.permits("10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn urls_are_checked_for_scheme_credentials_and_every_address() {
        let guard = AddressGuard::default();
        for (url, why) in [
            ("ftp://example.com/x", "http or https"),
            ("https://user:pw@example.com/", "credentials"),
            ("http://127.0.0.1:9/hook", "loopback"),
            ("http://[::1]/hook", "loopback"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://10.0.0.7/hook", "private"),
            ("http://localhost:8080/hook", "loopback"),
        ] {
            let e = guard.check_url(url).await.unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn secrets_seal_and_open_only_under_their_key() {
        let a = Sealer::new("one master secret of enough length");
        let b = Sealer::new("another master secret of enough length");
        let secret = new_secret();
        let sealed = a.seal(&secret);
        assert!(!sealed.contains(&secret));
        assert_eq!(a.open(&sealed).as_deref(), Some(secret.as_str()));
        assert_eq!(b.open(&sealed), None);
        assert_eq!(secret_bytes(&secret).unwrap().len(), 24);
    }

    #[test]
    fn the_signature_is_the_standard_one() {
        // The example of the Standard Webhooks specification.
        let secret = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
