//! The authentication endpoints (API.md 1.3): setup, login, refresh, logout, `me`, and the
//! audit of failed logins.

use super::*;

pub(super) fn setup_status(state: &State, peer: Option<SocketAddr>) -> Reply {
    if !is_local(peer) && !state.auth.config().allow_remote_setup {
        return auth_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Setup status can only be checked from localhost",
        );
    }
    let needs = needs_setup(state);
    reply(
        StatusCode::OK,
        &json!({"needs_setup": needs, "message": if needs {
            "Server requires initial setup: POST /v1/api/auth/setup"
        } else {
            "Server is configured"
        }}),
    )
}

fn needs_setup(state: &State) -> bool {
    catalog::user(state.engine.store().as_ref(), auth::ROOT)
        .ok()
        .flatten()
        .is_none_or(|root| root.password_hash.is_empty())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    #[serde(alias = "username")]
    user: String,
    password: String,
    root_password: String,
    #[serde(default)]
    email: Option<String>,
}

pub(super) async fn setup(state: &State, peer: Option<SocketAddr>, body: &[u8]) -> Reply {
    if !is_local(peer) && !state.auth.config().allow_remote_setup {
        return auth_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Setup is only allowed from localhost",
        );
    }
    let b: SetupBody = match auth_body(body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if !needs_setup(state) {
        return auth_error(
            StatusCode::CONFLICT,
            "already_configured",
            "Server is already configured",
        );
    }
    let name = b.user.trim().to_ascii_lowercase();
    if name == auth::ROOT
        || name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return auth_error(
            StatusCode::BAD_REQUEST,
            "invalid_user",
            "Invalid DBA user name",
        );
    }
    if b.password.len() > 256 || b.root_password.len() > 256 {
        return auth_error(
            StatusCode::BAD_REQUEST,
            "weak_password",
            "Passwords must be at most 256 characters",
        );
    }
    if let Some(why) = auth::weak_password(&b.password) {
        return auth_error(
            StatusCode::BAD_REQUEST,
            "weak_password",
            &format!("DBA user password: {why}"),
        );
    }
    if let Some(why) = auth::weak_password(&b.root_password) {
        return auth_error(
            StatusCode::BAD_REQUEST,
            "weak_password",
            &format!("Root password: {why}"),
        );
    }
    let store = state.engine.store().clone();
    if catalog::user(store.as_ref(), &name)
        .ok()
        .flatten()
        .is_some()
    {
        return auth_error(
            StatusCode::CONFLICT,
            "user_exists",
            &format!("User '{name}' already exists"),
        );
    }
    let (Ok(dba_hash), Ok(root_hash)) = (
        state.auth.hash(b.password).await,
        state.auth.hash(b.root_password).await,
    ) else {
        return auth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Could not hash the password",
        );
    };
    let now = auth::now_s() * 1000;
    let Some(mut root) = catalog::user(store.as_ref(), auth::ROOT).ok().flatten() else {
        return auth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "root user is missing",
        );
    };
    root.password_hash = root_hash;
    root.updated_at_ms = now;
    let dba = UserDef {
        id: name,
        role: Role::Dba,
        email: b.email,
        password_hash: dba_hash,
        auth_type: "password".into(),
        created_at_ms: now,
        updated_at_ms: now,
        deleted_at_ms: None,
    };
    // The check above is advisory: the op re-checks at apply, so of concurrent setups
    // exactly one is configured.
    let ops = vec![Op::Setup {
        root,
        dba: dba.clone(),
    }];
    match state.engine.propose_ops(auth::ROOT, ops).await {
        Ok(_) => reply(
            StatusCode::OK,
            &json!({"user": user_info(&dba),
                    "message": "Server setup complete. Log in with the DBA user or root."}),
        ),
        Err(e)
            if e.message
                .contains(folddb_materializer::event::SETUP_ALREADY_DONE) =>
        {
            auth_error(StatusCode::CONFLICT, "already_configured", &e.message)
        }
        Err(e) if e.message.contains("already exists") => {
            auth_error(StatusCode::CONFLICT, "user_exists", &e.message)
        }
        Err(e) => auth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            &e.message,
        ),
    }
}

fn token_reply(state: &State, user: &UserDef) -> Reply {
    let Ok(t) = state.auth.issue(user) else {
        return auth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Could not sign tokens",
        );
    };
    let body = json!({
        "user": user_info(user),
        "admin_ui_access": user.role.is_admin(),
        "expires_at": rfc3339(t.access_exp * 1000),
        "access_token": t.access,
        "refresh_token": t.refresh,
        "refresh_expires_at": rfc3339(t.refresh_exp * 1000),
    });
    let mut r = reply(StatusCode::OK, &body);
    let now = auth::now_s();
    for (name, value, exp) in [
        ("kalamdb_auth", &t.access, t.access_exp),
        ("kalamdb_refresh", &t.refresh, t.refresh_exp),
    ] {
        let c = format!(
            "{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            exp.saturating_sub(now)
        );
        if let Ok(v) = warp::http::HeaderValue::from_str(&c) {
            r.headers_mut().append("set-cookie", v);
        }
    }
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    #[serde(alias = "username")]
    user: String,
    password: String,
}

/// An auth endpoint's JSON body, or its 400 in the auth envelope (API.md 1.5).
fn auth_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Reply>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(auth_error(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            &format!("Invalid JSON payload: {e}"),
        ))
    })
}

/// Longest password a login may send (API.md 1.3); longer ones fail like a wrong one.
const MAX_LOGIN_PASSWORD_CHARS: usize = 256;

pub(super) async fn login(state: &State, ip: IpAddr, body: &[u8]) -> Reply {
    let b: LoginBody = match auth_body(body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let invalid = || {
        auth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid credentials",
        )
    };
    let id = b.user.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 128 {
        return invalid();
    }
    let now = auth::now_s();
    if state.guard.locked(&id, now) {
        return auth_error(
            StatusCode::UNAUTHORIZED,
            "account_locked",
            "Account is locked after too many failed logins; try again later",
        );
    }
    let user = catalog::user(state.engine.store().as_ref(), &id)
        .ok()
        .flatten()
        .filter(|u| u.deleted_at_ms.is_none());
    if let Some(u) = &user
        && u.id == auth::ROOT
        && u.password_hash.is_empty()
        && b.password.is_empty()
    {
        return auth_error(
            StatusCode::PRECONDITION_REQUIRED,
            "setup_required",
            "Server requires initial setup. Root password is not configured.",
        );
    }
    // Unknown users and wrong passwords take the same path and the same time.
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = b.password.chars().count() <= MAX_LOGIN_PASSWORD_CHARS
        && state.auth.check_or_waste(b.password, hash).await;
    match user {
        Some(user) if ok => {
            state.guard.succeeded(&id);
            audit_login(state, &id, "login", None, ip).await;
            token_reply(state, &user)
        }
        _ => {
            // Not written to the log here: an unauthenticated request must not cost a log
            // entry. [`audit_failed_logins`] records them, aggregated.
            let locked = state.guard.failed(&id, now);
            state.guard.to_audit(&id, ip, locked);
            invalid()
        }
    }
}

/// How often failed logins are written to `system.audit_log`.
const FAILED_LOGIN_AUDIT_INTERVAL: Duration = Duration::from_secs(5);

/// Writes the failed logins of each interval to `system.audit_log`, one command for all of
/// them: per login name and address, how many failed and whether the account was locked.
pub(super) async fn audit_failed_logins(state: Arc<State>) {
    let mut tick = tokio::time::interval(FAILED_LOGIN_AUDIT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let failed = state.guard.take_audit();
        let mut ops: Vec<Op> = failed
            .by_source
            .into_iter()
            .map(|((name, ip), (count, locked))| {
                let mut details = format!("{count} failed login(s)");
                if locked {
                    details.push_str("; account locked");
                }
                Op::Audit {
                    actor: name.clone(),
                    action: "login_failed".to_owned(),
                    target: name,
                    details: Some(details),
                    ip: Some(ip.to_string()),
                    subject: None,
                }
            })
            .collect();
        if failed.unrecorded > 0 {
            ops.push(Op::Audit {
                actor: String::new(),
                action: "login_failed".to_owned(),
                target: "*".to_owned(),
                details: Some(format!(
                    "{} more failed logins from other names or addresses",
                    failed.unrecorded
                )),
                ip: None,
                subject: None,
            });
        }
        if ops.is_empty() {
            continue;
        }
        if let Err(e) = state.engine.propose_ops(auth::ROOT, ops).await {
            tracing::warn!(error = %e.message, "could not record failed logins in the audit log");
        }
    }
}

/// Records a login attempt in `system.audit_log`; a failure to record is logged, not fatal.
async fn audit_login(state: &State, id: &str, action: &str, details: Option<&str>, ip: IpAddr) {
    let op = Op::Audit {
        actor: id.to_owned(),
        action: action.to_owned(),
        target: id.to_owned(),
        details: details.map(str::to_owned),
        ip: Some(ip.to_string()),
        subject: None,
    };
    if let Err(e) = state.engine.propose_ops(id, vec![op]).await {
        tracing::warn!(error = %e.message, "could not record a login in the audit log");
    }
}

pub(super) async fn refresh(state: &State, headers: &HeaderMap) -> Reply {
    let invalid = |m: &str| auth_error(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let token = match (cookie(headers, "kalamdb_refresh"), bearer(headers)) {
        (Some(t), _) => t,
        (None, Ok(Some(t))) => t,
        _ => return invalid("Missing refresh token"),
    };
    let claims = match state.auth.verify(token) {
        Ok(c) => c,
        Err(_) => return invalid("Invalid credentials"),
    };
    if claims.token_type != "refresh" {
        return invalid("Refresh endpoint requires a refresh token");
    }
    match state.auth.user_of(&state.engine, &claims) {
        Some(user) => token_reply(state, &user),
        None => invalid("Invalid credentials"),
    }
}

pub(super) fn logout() -> Reply {
    let mut r = reply(
        StatusCode::OK,
        &json!({"message": "Logged out successfully"}),
    );
    for name in ["kalamdb_auth", "kalamdb_refresh"] {
        if let Ok(v) = warp::http::HeaderValue::from_str(&format!(
            "{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        )) {
            r.headers_mut().append("set-cookie", v);
        }
    }
    r
}

pub(super) fn me(state: &State, headers: &HeaderMap) -> Reply {
    let invalid = || {
        auth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid credentials",
        )
    };
    let token = match (bearer(headers), cookie(headers, "kalamdb_auth")) {
        (Ok(Some(t)), _) => t,
        (Ok(None), Some(t)) => t,
        _ => return invalid(),
    };
    let Ok(claims) = state.auth.verify(token) else {
        return invalid();
    };
    if claims.token_type != "access" {
        return invalid();
    }
    match state.auth.user_of(&state.engine, &claims) {
        Some(u) => reply(
            StatusCode::OK,
            &json!({"user": user_info(&u), "admin_ui_access": u.role.is_admin()}),
        ),
        None => invalid(),
    }
}
