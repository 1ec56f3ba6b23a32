//! Authentication (API.md 1.3–1.6): bcrypt passwords, HS256 JWTs (access and refresh), the
//! first-run root user, and checking a bearer token on every protected request. Users are
//! catalog state folded from the log; this module reads them from the hot tier and writes
//! them only by proposing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use folddb_materializer::{Op, Role, UserDef, catalog};
use folddb_query::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;

/// The issuer of our tokens: KalamDB's literal, so KalamDB clients that inspect tokens work.
pub const ISSUER: &str = "kalamdb";
/// The root user's id.
pub const ROOT: &str = "root";

/// JWT claims (API.md 1.4).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub exp: u64,
    pub iat: u64,
    pub email: Option<String>,
    pub role: String,
    pub token_type: String,
    /// The account the token was issued to: its creation time (ms). A token names an
    /// account, not just a name (tokens from before this claim have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<u64>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid,
}

#[derive(Clone)]
pub struct Auth {
    config: AuthConfig,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// A hash to verify against when there is none, at the configured cost.
    dummy_hash: String,
    /// Tokens whose signature checked, with their claims: every request carries the same
    /// few tokens, and decoding one costs more than the rest of a single-row INSERT's
    /// authentication. Expiry is checked on every use.
    verified: Arc<Mutex<HashMap<String, Claims>>>,
}

/// Seconds a token is still honoured past its expiry or before its issue time (clock skew).
const LEEWAY_S: u64 = 60;
/// Verified tokens remembered at most; past it the memory starts over.
const MAX_VERIFIED: usize = 4096;

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

/// `claims` if they are current at `now`: not expired, not issued in the future (both with
/// [`LEEWAY_S`]).
fn current(claims: Claims, now: u64) -> Result<Claims, TokenError> {
    if claims.exp.saturating_add(LEEWAY_S) < now {
        return Err(TokenError::Expired);
    }
    if claims.iat > now + LEEWAY_S {
        return Err(TokenError::Invalid);
    }
    Ok(claims)
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token pair as login and refresh return it.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub access_exp: u64,
    pub refresh: String,
    pub refresh_exp: u64,
}

impl Auth {
    pub fn new(config: AuthConfig) -> Auth {
        let secret = config.jwt_secret.as_bytes();
        Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            dummy_hash: bcrypt::hash("folddb-no-such-user", config.bcrypt_cost).unwrap_or_default(),
            verified: Arc::default(),
            config,
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    fn token(
        &self,
        user: &UserDef,
        token_type: &str,
        lifetime_s: u64,
    ) -> anyhow::Result<(String, u64)> {
        let iat = now_s();
        let claims = Claims {
            sub: user.id.clone(),
            iss: ISSUER.to_owned(),
            exp: iat + lifetime_s,
            iat,
            email: user.email.clone(),
            role: user.role.name().to_owned(),
            token_type: token_type.to_owned(),
            account: Some(user.created_at_ms),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims.exp))
    }

    /// A fresh access + refresh pair for `user`.
    pub fn issue(&self, user: &UserDef) -> anyhow::Result<Tokens> {
        let access_s = self.config.jwt_expiry_hours * 3600;
        let (access, access_exp) = self.token(user, "access", access_s)?;
        let (refresh, refresh_exp) = self.token(user, "refresh", access_s * 7)?;
        Ok(Tokens {
            access,
            access_exp,
            refresh,
            refresh_exp,
        })
    }

    /// The claims of a token we signed and that has not expired (60 s leeway).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let now = now_s();
        let known = self.verified_tokens().get(token).cloned();
        if let Some(claims) = known {
            return current(claims, now);
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = LEEWAY_S;
        v.set_issuer(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                }
            })?;
        let claims = current(data.claims, now)?;
        let mut verified = self.verified_tokens();
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    fn verified_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claims>> {
        // The map holds no invariant a panicking holder could break.
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live user a token names, if it is still the account the token was issued to and
    /// its role still matches (API.md 1.4).
    pub fn user_of(&self, engine: &Engine, claims: &Claims) -> Option<UserDef> {
        let user = catalog::user(engine.store().as_ref(), &claims.sub).ok()??;
        let same_account = claims.account.is_none_or(|a| a == user.created_at_ms);
        (same_account && user.deleted_at_ms.is_none() && user.role.name() == claims.role)
            .then_some(user)
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let cost = self.config.bcrypt_cost;
        Ok(tokio::task::spawn_blocking(move || bcrypt::hash(password, cost)).await??)
    }

    /// Whether `password` matches `hash`; with no hash (no such user, or no password set)
    /// it still spends a bcrypt verification, so that the answer takes as long either way.
    pub async fn check_or_waste(&self, password: String, hash: Option<String>) -> bool {
        match hash.filter(|h| !h.is_empty()) {
            Some(h) => self.check(password, h).await,
            None => {
                let _ = self.check(password, self.dummy_hash.clone()).await;
                false
            }
        }
    }

    /// Whether `password` matches `hash` (never for an empty hash).
    pub async fn check(&self, password: String, hash: String) -> bool {
        if hash.is_empty() {
            return false;
        }
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
    }
}

/// Why a password is too weak (API.md 1.3: 8..=72 characters, not a common password).
pub fn weak_password(p: &str) -> Option<&'static str> {
    const COMMON: &[&str] = &[
        "password",
        "password1",
        "12345678",
        "123456789",
        "1234567890",
        "qwerty123",
        "qwertyui",
        "iloveyou",
        "admin123",
        "letmein1",
        "welcome1",
        "abc12345",
        "11111111",
        "00000000",
        "passw0rd",
        "football",
        "baseball",
        "sunshine",
        "princess",
        "trustno1",
    ];
    if p.chars().count() < 8 {
        Some("must be at least 8 characters")
    } else if p.len() > 72 {
        Some("must be at most 72 bytes")
    } else if COMMON.contains(&p.to_ascii_lowercase().as_str()) {
        Some("is too common")
    } else {
        None
    }
}

/// Creates root (and the `default` namespace) on first start; sets root's password from the
/// configuration when root has none yet.
pub async fn bootstrap(engine: &Engine, auth: &Auth) -> anyhow::Result<()> {
    let store = engine.store().clone();
    let root = catalog::user(store.as_ref(), ROOT)?;
    let wanted = auth.config.root_password.clone().filter(|p| !p.is_empty());
    let mut ops = Vec::new();
    let now_ms = now_s() * 1000;
    match root {
        None => {
            let password_hash = match wanted {
                Some(p) => auth.hash(p).await?,
                None => String::new(),
            };
            ops.push(Op::PutUser {
                user: UserDef {
                    id: ROOT.into(),
                    role: Role::System,
                    email: Some("root@localhost".into()),
                    password_hash,
                    auth_type: "internal".into(),
                    created_at_ms: now_ms,
                    updated_at_ms: now_ms,
                    deleted_at_ms: None,
                },
                create: true,
            });
        }
        Some(mut root) if root.password_hash.is_empty() => {
            if let Some(p) = wanted {
                root.password_hash = auth.hash(p).await?;
                root.updated_at_ms = now_ms;
                ops.push(Op::PutUser {
                    user: root,
                    create: false,
                });
            }
        }
        Some(_) => {}
    }
    if catalog::namespace(store.as_ref(), "default")?.is_none() {
        ops.push(Op::CreateNamespace {
            name: "default".into(),
            description: Some("the namespace of unqualified names".into()),
            if_not_exists: true,
        });
    }
    if !ops.is_empty() {
        engine
            .propose_ops(ROOT, ops)
            .await
            .map_err(|e| anyhow::anyhow!("bootstrap: {}", e.message))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(AuthConfig {
            bcrypt_cost: 4,
            ..AuthConfig::default()
        })
    }

    fn signed(auth: &Auth, exp: u64, iat: u64) -> String {
        let claims = Claims {
            sub: "alice".to_owned(),
            iss: ISSUER.to_owned(),
            exp,
            iat,
            email: None,
            role: "user".to_owned(),
            token_type: "access".to_owned(),
            account: Some(1),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &auth.encoding)
            .expect("encodes")
    }

    #[test]
    fn a_remembered_token_is_checked_like_a_new_one() {
        let auth = auth();
        let now = now_s();
        let good = signed(&auth, now + 3600, now);
        for _ in 0..2 {
            assert_eq!(auth.verify(&good).map(|c| c.sub).as_deref(), Ok("alice"));
        }
        // Another secret's token, or this one with its signature changed, is refused even
        // though a token of the same claims is remembered.
        let other = Auth::new(AuthConfig {
            jwt_secret: "another secret".to_owned(),
            bcrypt_cost: 4,
            ..AuthConfig::default()
        });
        assert_eq!(
            auth.verify(&signed(&other, now + 3600, now)).map(|_| ()),
            Err(TokenError::Invalid)
        );
        let mut tampered = good.clone();
        let last = tampered.pop().expect("a token");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(auth.verify(&tampered).map(|_| ()), Err(TokenError::Invalid));
        for _ in 0..2 {
            assert_eq!(
                auth.verify(&signed(&auth, now - 2 * LEEWAY_S, now - 7200))
                    .map(|_| ()),
                Err(TokenError::Expired)
            );
            assert_eq!(
                auth.verify(&signed(&auth, now + 7200, now + 2 * LEEWAY_S))
                    .map(|_| ()),
                Err(TokenError::Invalid),
                "issued in the future"
            );
        }
    }

    #[test]
    fn remembered_claims_expire() {
        let auth = auth();
        let now = now_s();
        let claims = auth.verify(&signed(&auth, now + 10, now)).expect("current");
        assert!(current(claims.clone(), now + 10 + LEEWAY_S).is_ok());
        assert_eq!(
            current(claims, now + 11 + LEEWAY_S).map(|_| ()),
            Err(TokenError::Expired)
        );
    }
}
