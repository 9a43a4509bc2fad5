//! Where Redis is: the `redis.url` setting, parsed.

/// `redis://[[user]:password@]host[:port][/db]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) db: u32,
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| "redis.url must start with redis://".to_owned())?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, address) = match authority.rsplit_once('@') {
            Some((credentials, address)) => (Some(credentials), address),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            None => (None, None),
            Some(credentials) => match credentials.split_once(':') {
                Some((user, password)) => (
                    (!user.is_empty()).then(|| user.to_owned()),
                    Some(password.to_owned()),
                ),
                None => (None, Some(credentials.to_owned())),
            },
        };
        let port_of = |port: &str| {
            port.parse::<u16>()
                .map_err(|_| format!("redis.url: bad port {port:?}"))
        };
        let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| "redis.url: unclosed [".to_owned())?;
            match after.strip_prefix(':') {
                Some(port) => (host, port_of(port)?),
                None if after.is_empty() => (host, 6379),
                None => return Err("redis.url: bad address".to_owned()),
            }
        } else {
            match address.rsplit_once(':') {
                Some((host, port)) => (host, port_of(port)?),
                None => (address, 6379),
            }
        };
        if host.is_empty() {
            return Err("redis.url names no host".to_owned());
        }
        let db = if path.is_empty() {
            0
        } else {
            path.parse()
                .map_err(|_| format!("redis.url: bad database number {path:?}"))?
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            user,
            password,
            db,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_port_credentials_and_database() {
        let url = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.db),
            ("127.0.0.1", 6380, 2)
        );
        assert_eq!((url.user, url.password), (None, None));
        let url = RedisUrl::parse("redis://:secret@cache").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("cache", 6379));
        assert_eq!((url.user, url.password.as_deref()), (None, Some("secret")));
        let url = RedisUrl::parse("redis://app:pw@[::1]:7000").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 7000));
        assert_eq!(url.user.as_deref(), Some("app"));
        assert_eq!(RedisUrl::parse("redis://[::1]").unwrap().port, 6379);
        for bad in [
            "http://x",
            "redis://",
            "redis://h:port",
            "redis://h/x",
            "redis://[::1",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
