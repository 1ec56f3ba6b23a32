//! User management statements (API.md 3.9): CREATE / ALTER / DROP USER, each with its
//! audit entry, under the grant rules of `authz`.

use super::*;

impl Engine {
    /// CREATE USER (API.md 3.9).
    pub(super) async fn create_user(
        &self,
        caller: &Caller,
        id: &str,
        auth: &UserAuth,
        role: Role,
        email: &Option<String>,
    ) -> StmtResult<Out> {
        grant_allowed(caller, role)?;
        let (password_hash, auth_type) = match auth {
            UserAuth::Password(p) => (self.hash_password(p).await?, "password"),
            UserAuth::Internal => (String::new(), "internal"),
            UserAuth::OAuth(j) => {
                serde_json::from_str::<Json>(j)
                    .map_err(|e| format!("OAUTH expects a JSON object: {e}"))?;
                (String::new(), "oauth")
            }
        };
        let now = now_ms();
        let user = UserDef {
            id: id.to_owned(),
            role,
            email: email.clone(),
            password_hash,
            auth_type: auth_type.into(),
            created_at_ms: now,
            updated_at_ms: now,
            deleted_at_ms: None,
        };
        let details = format!("role={}", role.name());
        self.propose(
            &caller.user,
            vec![
                Op::PutUser { user, create: true },
                audit(caller, "create_user", id, Some(&details)),
            ],
        )
        .await?;
        msg(caller, format!("User '{id}' created"))
    }

    /// ALTER USER (API.md 3.9).
    pub(super) async fn alter_user(
        &self,
        caller: &Caller,
        id: &str,
        change: &UserChange,
    ) -> StmtResult<Out> {
        let mut user = catalog::user(self.store.as_ref(), id)?
            .filter(|u| u.deleted_at_ms.is_none())
            .ok_or_else(|| Error::NotFound(format!("User '{id}' not found")))?;
        grant_allowed(caller, user.role)?;
        let details = match change {
            UserChange::Password(p) => {
                user.password_hash = self.hash_password(p).await?;
                if user.auth_type == "internal" && id != "root" {
                    user.auth_type = "password".into();
                }
                "password".to_owned()
            }
            UserChange::Role(r) => {
                grant_allowed(caller, *r)?;
                if id == "root" && *r != Role::System {
                    return Err(denied("root keeps the system role".into()));
                }
                user.role = *r;
                format!("role={}", r.name())
            }
            UserChange::Email(e) => {
                user.email = e.clone();
                "email".to_owned()
            }
        };
        user.updated_at_ms = now_ms();
        self.replace_user(caller, user, "alter_user", Some(&details))
            .await?;
        msg(caller, format!("User '{id}' updated"))
    }

    /// DROP USER (API.md 3.9): a soft delete.
    pub(super) async fn drop_user(
        &self,
        caller: &Caller,
        id: &str,
        if_exists: bool,
    ) -> StmtResult<Out> {
        let user = catalog::user(self.store.as_ref(), id)?.filter(|u| u.deleted_at_ms.is_none());
        let Some(mut user) = user else {
            if if_exists {
                return msg(caller, format!("User '{id}' does not exist"));
            }
            return Err(Error::NotFound(format!("User '{id}' not found")));
        };
        if id == "root" || *id == caller.user {
            return Err(denied(format!(
                "user '{id}' cannot be dropped by {}",
                caller.user
            )));
        }
        grant_allowed(caller, user.role)?;
        let now = now_ms();
        user.deleted_at_ms = Some(now);
        user.updated_at_ms = now;
        self.replace_user(caller, user, "drop_user", None).await?;
        msg(caller, format!("User '{id}' dropped (soft delete)"))
    }
}
