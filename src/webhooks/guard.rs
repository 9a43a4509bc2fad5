//! Where deliveries may go. By default never to the server's own network: loopback, private,
//! link-local (cloud metadata), shared and unspecified addresses are refused, after DNS
//! resolution (a resolver that filters what it returns) and for IP literals in the URL and
//! in every redirect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Longest webhook URL accepted.
pub const MAX_URL_CHARS: usize = 2048;
/// Redirects followed before a delivery attempt fails.
const MAX_REDIRECTS: usize = 5;

/// Whether an address belongs to a network a webhook must not reach.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96, and the local-use 64:ff9b:1::/48) reaches IPv4 behind it.
            if segments[0] == 0x64 && segments[1] == 0xff9b {
                let [.., a, b] = segments;
                let v4 = Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8);
                return segments[2..6] != [0, 0, 0, 0] || is_private_v4(v4);
            }
            let first = segments[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // AWS IMDS over IPv6
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata lives here
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments 192.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || a >= 240 // reserved
}

/// Checks a URL a webhook is registered with: http(s), a host, not too long, and no IP
/// literal in a forbidden network.
pub fn check_url(text: &str, allow_private: bool) -> Result<Url, String> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(format!("url must be at most {MAX_URL_CHARS} characters"));
    }
    // The parser would quietly drop or encode these, and then the URL delivered to would not
    // be the one stored and shown.
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("url must not contain whitespace or control characters".into());
    }
    let url = Url::parse(text).map_err(|e| format!("url is not a valid URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("url must be an http or https URL".into());
    }
    if url.host().is_none() {
        return Err("url must have a host".into());
    }
    check_target(&url, allow_private)?;
    Ok(url)
}

/// Refuses a URL whose host is an IP literal in a forbidden network (names are checked when
/// resolved).
pub fn check_target(url: &Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    if is_private(ip) {
        return Err("url points to a private, loopback or link-local address".into());
    }
    Ok(())
}

/// A resolver that drops forbidden addresses, and fails when nothing is left.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| !is_private(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves only to private addresses").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of webhook deliveries and workflows' `fetch`, with the address guard in
/// its resolver and redirects; `agent` names which in the `User-Agent`.
pub fn client(allow_private: bool, agent: &str) -> reqwest::Result<reqwest::Client> {
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        // `previous()` holds the first URL too.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let scheme = attempt.url().scheme();
        if scheme != "http" && scheme != "https" {
            return attempt.error("redirect to a non-http URL");
        }
        if let Err(refused) = check_target(attempt.url(), allow_private) {
            return attempt.error(refused);
        }
        attempt.follow()
    });
    // No proxy: a proxy would resolve the target itself, past the guard.
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(redirects)
        .user_agent(format!("{agent}/{}", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(4);
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build()
}

/// A failed request, for a log or a result: what went wrong and its innermost cause, never
/// the URL (it may hold a secret).
pub fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "could not connect"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_redirect() {
        "bad redirect"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_networks() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook", false).is_err());
        assert!(check_url("http://[::1]/hook", false).is_err());
        assert!(check_url("http://169.254.169.254/latest/meta-data", false).is_err());
        assert!(check_url("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(check_url("ftp://example.com", false).is_err());
        assert!(check_url("not a url", false).is_err());
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(3000)), false).is_err());
        for sneaky in [
            "https://exa\u{0}mple.com/",
            "https://example.com/a\tb",
            " https://example.com",
        ] {
            assert!(check_url(sneaky, false).is_err(), "{sneaky:?}");
        }
    }
}
