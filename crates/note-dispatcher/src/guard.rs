//! Guard against server-side request forgery through the customer's target URL.
//!
//! The target URL of the note-dispatcher (`payload.url`) is a custom field the customer types
//! in. Posting to it blindly would let anybody who can install the app make the function call
//! the cloud metadata service (`169.254.169.254`), services on loopback or hosts of the private
//! network (docs/original.md#fixed-bugs item 6). [`UrlGuard::check`] therefore
//!
//! 1. accepts only `http` and `https` URLs with a host;
//! 2. resolves the host (`tokio::net::lookup_host`; IP literals as they are) and refuses it when
//!    **any** address is not public ([`classify`]): loopback, link-local (incl. the metadata
//!    address and `fe80::/10`), private (`10/8`, `172.16/12`, `192.168/16`, `fc00::/7`),
//!    unspecified, shared (`100.64/10`), multicast, broadcast/reserved — also when written as an
//!    IPv4-mapped, IPv4-compatible, NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) IPv6 address;
//! 3. returns a [`CheckedUrl`] whose [`client`](CheckedUrl::client) connects **only** to the
//!    checked addresses (reqwest `resolve_to_addrs`), never follows redirects and never uses a
//!    proxy — so neither DNS rebinding nor a redirect can lead the request elsewhere.
//!
//! A deployment that must reach private hosts (tests, the local engine) sets
//! `NOTE_DISPATCHER_ALLOW_PRIVATE_URLS=true`; the scheme check stays.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

/// What kind of address an IP is, for the purpose of the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A globally routable address: allowed.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `169.254.0.0/16` (incl. the metadata address `169.254.169.254`), `fe80::/10`.
    LinkLocal,
    /// `10/8`, `172.16/12`, `192.168/16`, `fc00::/7` (and the deprecated site-local `fec0::/10`).
    Private,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// The shared address space of carrier-grade NAT, `100.64.0.0/10`.
    Shared,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `240.0.0.0/4` incl. the broadcast address.
    Reserved,
}

impl AddressClass {
    /// Whether the guard lets requests go to such an address without the override setting.
    pub fn is_public(self) -> bool {
        self == AddressClass::Public
    }

    fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "a public address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::Private => "a private address",
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::Shared => "a shared (carrier-grade NAT) address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Reserved => "a reserved address",
        }
    }
}

/// Classifies an IPv4 address.
pub fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, _, _] = ip.octets();
    match (a, b) {
        (0, _) => AddressClass::Unspecified,
        (127, _) => AddressClass::Loopback,
        (169, 254) => AddressClass::LinkLocal,
        (10, _) => AddressClass::Private,
        (172, 16..=31) | (192, 168) => AddressClass::Private,
        (100, 64..=127) => AddressClass::Shared,
        (224..=239, _) => AddressClass::Multicast,
        (240..=255, _) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

/// Classifies an IPv6 address; IPv4 addresses embedded in it (mapped `::ffff:a.b.c.d`,
/// compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) are classified as
/// the IPv4 address they designate.
pub fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    let segments = ip.segments();
    let octets = ip.octets();
    let embedded =
        |at: usize| Ipv4Addr::new(octets[at], octets[at + 1], octets[at + 2], octets[at + 3]);
    // IPv4-mapped ::ffff:0:0/96 and IPv4-compatible ::/96 (deprecated).
    if segments[..5] == [0; 5] && (segments[5] == 0xffff || segments[5] == 0) {
        return classify_v4(embedded(12));
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded(12));
    }
    // 6to4 2002::/16 carries the IPv4 address in bits 16..48.
    if segments[0] == 0x2002 {
        return classify_v4(embedded(2));
    }
    match segments[0] {
        s if s & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        s if s & 0xffc0 == 0xfec0 => AddressClass::Private,
        s if s & 0xfe00 == 0xfc00 => AddressClass::Private,
        s if s & 0xff00 == 0xff00 => AddressClass::Multicast,
        _ => AddressClass::Public,
    }
}

/// Classifies an address ([`classify_v4`], [`classify_v6`]).
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

/// Why a target URL is refused. The messages do not repeat the URL (it may carry credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    /// Not a URL.
    #[error("the target URL is not a valid URL")]
    Invalid,
    /// A scheme other than `http`/`https`.
    #[error("the target URL must use http or https, not {0}")]
    Scheme(String),
    /// No host.
    #[error("the target URL has no host")]
    NoHost,
    /// The host name does not resolve.
    #[error("the host of the target URL cannot be resolved")]
    Unresolvable,
    /// The host is (or resolves to) a non-public address.
    #[error("the target URL points to {}, which is not allowed", .0.describe())]
    Address(AddressClass),
}

/// A URL that passed the guard, with the addresses it may be reached at.
#[derive(Debug, Clone)]
pub struct CheckedUrl {
    url: Url,
    /// `(host name, checked addresses)` when the host is a name (empty for IP literals).
    pinned: Option<(String, Vec<SocketAddr>)>,
}

impl CheckedUrl {
    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The checked addresses the host name was resolved to (`None` for an IP literal).
    pub fn addresses(&self) -> Option<&[SocketAddr]> {
        self.pinned.as_ref().map(|(_, addrs)| addrs.as_slice())
    }

    /// An HTTP client for this URL only: connects to the checked addresses, follows no
    /// redirects, uses no proxy, gives up after `timeout`.
    pub fn client(&self, timeout: Duration) -> reqwest::Result<reqwest::Client> {
        let mut builder = app_builder_core::tls::http_client_builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some((host, addrs)) = &self.pinned {
            builder = builder.resolve_to_addrs(host, addrs);
        }
        builder.build()
    }
}

/// The guard: checks target URLs, refusing non-public addresses unless allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlGuard {
    allow_private: bool,
}

impl UrlGuard {
    /// A guard refusing non-public addresses (production).
    pub fn strict() -> Self {
        Self {
            allow_private: false,
        }
    }

    /// A guard that also lets non-public addresses through (tests, the local engine); schemes
    /// are still checked.
    pub fn allowing_private() -> Self {
        Self {
            allow_private: true,
        }
    }

    /// Whether non-public addresses are allowed.
    pub fn allows_private(self) -> bool {
        self.allow_private
    }

    /// Checks `raw` (see the module docs).
    pub async fn check(self, raw: &str) -> Result<CheckedUrl, UrlRefused> {
        let url = Url::parse(raw.trim()).map_err(|_| UrlRefused::Invalid)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlRefused::Scheme(url.scheme().to_owned()));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        match url.host().ok_or(UrlRefused::NoHost)? {
            Host::Ipv4(ip) => {
                self.admit(IpAddr::V4(ip))?;
                Ok(CheckedUrl { url, pinned: None })
            }
            Host::Ipv6(ip) => {
                self.admit(IpAddr::V6(ip))?;
                Ok(CheckedUrl { url, pinned: None })
            }
            Host::Domain(domain) => {
                let host = domain.trim_end_matches('.').to_owned();
                if host.is_empty() {
                    return Err(UrlRefused::NoHost);
                }
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|_| UrlRefused::Unresolvable)?
                    .collect();
                if addrs.is_empty() {
                    return Err(UrlRefused::Unresolvable);
                }
                for addr in &addrs {
                    self.admit(addr.ip())?;
                }
                let pinned = Some((domain.to_owned(), addrs));
                Ok(CheckedUrl { url, pinned })
            }
        }
    }

    fn admit(self, ip: IpAddr) -> Result<(), UrlRefused> {
        match classify(ip) {
            AddressClass::Public => Ok(()),
            _ if self.allow_private => Ok(()),
            class => Err(UrlRefused::Address(class)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> AddressClass {
        classify(ip.parse().unwrap())
    }

    #[test]
    fn ipv4_ranges() {
        for (ip, expected) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.255.254", AddressClass::Loopback),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("169.254.0.1", AddressClass::LinkLocal),
            ("10.0.0.1", AddressClass::Private),
            ("10.255.255.255", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("100.64.0.1", AddressClass::Shared),
            ("100.127.255.255", AddressClass::Shared),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Reserved),
            ("240.0.0.1", AddressClass::Reserved),
            // Neighbours of the ranges are public.
            ("172.15.255.255", AddressClass::Public),
            ("172.32.0.0", AddressClass::Public),
            ("192.169.0.1", AddressClass::Public),
            ("169.253.255.255", AddressClass::Public),
            ("100.63.255.255", AddressClass::Public),
            ("100.128.0.0", AddressClass::Public),
            ("11.0.0.1", AddressClass::Public),
            ("93.184.216.34", AddressClass::Public),
            ("8.8.8.8", AddressClass::Public),
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges_and_embedded_ipv4() {
        for (ip, expected) in [
            ("::1", AddressClass::Loopback),
            ("::", AddressClass::Unspecified),
            ("fe80::1", AddressClass::LinkLocal),
            ("febf::1", AddressClass::LinkLocal),
            ("fc00::1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("fec0::1", AddressClass::Private),
            ("ff02::1", AddressClass::Multicast),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("::ffff:a9fe:a9fe", AddressClass::LinkLocal),
            ("::ffff:10.1.2.3", AddressClass::Private),
            ("::ffff:0.0.0.0", AddressClass::Unspecified),
            ("::127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::169.254.169.254", AddressClass::LinkLocal),
            ("64:ff9b::192.168.0.1", AddressClass::Private),
            ("2002:a9fe:a9fe::1", AddressClass::LinkLocal),
            ("2002:7f00:1::", AddressClass::Loopback),
            ("::ffff:8.8.8.8", AddressClass::Public),
            ("64:ff9b::8.8.8.8", AddressClass::Public),
            ("2002:808:808::1", AddressClass::Public),
            ("2001:4860:4860::8888", AddressClass::Public),
            ("fe00::1", AddressClass::Public),
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[tokio::test]
    async fn strict_guard_refuses_non_public_targets() {
        let guard = UrlGuard::strict();
        for (url, expected) in [
            (
                "http://169.254.169.254/latest/meta-data/",
                UrlRefused::Address(AddressClass::LinkLocal),
            ),
            (
                "http://127.0.0.1:8080/x",
                UrlRefused::Address(AddressClass::Loopback),
            ),
            ("http://[::1]/", UrlRefused::Address(AddressClass::Loopback)),
            (
                "http://[::ffff:169.254.169.254]/",
                UrlRefused::Address(AddressClass::LinkLocal),
            ),
            (
                "https://10.0.0.5/hook",
                UrlRefused::Address(AddressClass::Private),
            ),
            (
                "http://0.0.0.0/",
                UrlRefused::Address(AddressClass::Unspecified),
            ),
            // Decimal and hex IPv4 forms are normalised by the URL parser.
            (
                "http://2852039166/",
                UrlRefused::Address(AddressClass::LinkLocal),
            ),
            (
                "http://0x7f.1/",
                UrlRefused::Address(AddressClass::Loopback),
            ),
            (
                "http://localhost:9/",
                UrlRefused::Address(AddressClass::Loopback),
            ),
            ("ftp://example.com/", UrlRefused::Scheme("ftp".into())),
            ("file:///etc/passwd", UrlRefused::Scheme("file".into())),
            ("not a url", UrlRefused::Invalid),
        ] {
            assert_eq!(guard.check(url).await.unwrap_err(), expected, "{url}");
        }
    }

    #[tokio::test]
    async fn public_literals_pass_and_allowing_guard_checks_only_the_scheme() {
        let checked = UrlGuard::strict()
            .check("https://93.184.216.34/hook")
            .await
            .unwrap();
        assert_eq!(checked.url().as_str(), "https://93.184.216.34/hook");
        assert!(checked.addresses().is_none());
        let guard = UrlGuard::allowing_private();
        let checked = guard.check("http://localhost:9/x").await.unwrap();
        let addrs = checked.addresses().unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.port() == 9 && a.ip().is_loopback()));
        assert_eq!(
            guard.check("gopher://localhost/").await.unwrap_err(),
            UrlRefused::Scheme("gopher".into())
        );
    }

    #[test]
    fn refusal_messages_do_not_repeat_the_url() {
        let message = UrlRefused::Address(AddressClass::LinkLocal).to_string();
        assert_eq!(
            message,
            "the target URL points to a link-local address, which is not allowed"
        );
    }
}
