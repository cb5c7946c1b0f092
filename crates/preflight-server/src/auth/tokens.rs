//! Session tokens for dashboard users: HS256 JWTs with issuer, audience, expiry and a unique
//! id, so each one can be revoked individually.

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const ISSUER: &str = "preflight";
pub const AUDIENCE: &str = "preflight-api";
/// Clock skew tolerated between replicas.
pub const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Uuid,
    /// Tenant id.
    pub tid: Uuid,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
}

impl Claims {
    pub fn expires_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.exp, 0)
            .single()
            .unwrap_or_else(Utc::now)
    }
    pub fn issued_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.iat, 0)
            .single()
            .unwrap_or_else(Utc::now)
    }
}

#[derive(Clone)]
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime_seconds: i64,
}

pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
}

impl TokenSigner {
    pub fn new(secret: &str, lifetime_minutes: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        TokenSigner {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            lifetime_seconds: (lifetime_minutes as i64).saturating_mul(60),
        }
    }

    pub fn lifetime_seconds(&self) -> i64 {
        self.lifetime_seconds
    }

    pub fn issue(
        &self,
        user_id: Uuid,
        tenant_id: Uuid,
        role: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IssuedToken> {
        let claims = Claims {
            sub: user_id,
            tid: tenant_id,
            role: role.to_string(),
            iat: now.timestamp(),
            exp: now.timestamp() + self.lifetime_seconds,
            jti: Uuid::new_v4().simple().to_string(),
            iss: ISSUER.to_string(),
            aud: AUDIENCE.to_string(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken { token, claims })
    }

    /// Signature, algorithm (HS256 only: `none` and others are refused), issuer, audience
    /// and expiry. Revocation is checked by the caller against storage.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_the_right_secret_and_claims() {
        let signer = TokenSigner::new("a-very-long-secret-for-tests-0123456789", 60);
        let issued = signer
            .issue(Uuid::new_v4(), Uuid::new_v4(), "admin", Utc::now())
            .unwrap();
        assert!(signer.verify(&issued.token).is_some());
        let other = TokenSigner::new("another-very-long-secret-for-tests-9876", 60);
        assert!(other.verify(&issued.token).is_none());
        let expired = signer
            .issue(
                Uuid::new_v4(),
                Uuid::new_v4(),
                "admin",
                Utc::now() - chrono::Duration::hours(2),
            )
            .unwrap();
        assert!(signer.verify(&expired.token).is_none());
    }
}
