//! The known-device cookie. Set in a browser where a person signed in successfully, it exempts
//! that browser from the username-wide sign-in slowdown (`credential_limits`), so someone
//! hammering the username elsewhere cannot keep its owner out. Signed with a key derived from
//! the KEK (every instance accepts it), bound to the person's subject, and expiring.

use ring::hmac;

/// `__Host-` (RFC 6265bis §4.1.3.2) with an https issuer: Secure, no Domain, Path=/.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-portcullis_device"
    } else {
        "portcullis_device"
    }
}

#[derive(Clone)]
pub struct KnownDevices {
    key: hmac::Key,
    ttl: i64,
}

impl KnownDevices {
    pub fn new(key: &[u8; 32], ttl: i64) -> KnownDevices {
        KnownDevices {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            ttl,
        }
    }

    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// `v1.<subject>.<expires>.<mac>`
    pub fn issue(&self, user_id: &str, now: i64) -> String {
        let body = format!("v1.{user_id}.{}", now.saturating_add(self.ttl));
        let mac = hmac::sign(&self.key, body.as_bytes());
        format!("{body}.{}", crate::jose::b64(mac.as_ref()))
    }

    /// True when `value` was issued by us for `user_id` and has not expired.
    pub fn is_known(&self, value: &str, user_id: &str, now: i64) -> bool {
        let Some((body, mac)) = value.rsplit_once('.') else {
            return false;
        };
        let Some(mac) = crate::jose::b64_decode(mac) else {
            return false;
        };
        if hmac::verify(&self.key, body.as_bytes(), &mac).is_err() {
            return false;
        }
        let mut parts = body.split('.');
        let (Some("v1"), Some(subject), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        subject == user_id && expires.parse::<i64>().is_ok_and(|e| e > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_known_for_its_user_until_it_expires() {
        let devices = KnownDevices::new(&[7; 32], 100);
        let cookie = devices.issue("alice-sub", 1000);
        assert!(devices.is_known(&cookie, "alice-sub", 1099));
        assert!(!devices.is_known(&cookie, "alice-sub", 1100), "expired");
        assert!(
            !devices.is_known(&cookie, "bob-sub", 1000),
            "bound to its user"
        );
        let forged = cookie.replace("alice-sub", "bob-sub");
        assert!(!devices.is_known(&forged, "bob-sub", 1000));
        let other_key = KnownDevices::new(&[8; 32], 100);
        assert!(!other_key.is_known(&cookie, "alice-sub", 1000));
        assert!(!devices.is_known("garbage", "alice-sub", 1000));
    }
}
