//! The Lua scripts, one file each in `scripts/`. Some start with fragments
//! of `scripts/lib/` (a clock reading, helpers), joined at compile time.
//! Each file's header names its KEYS and ARGV; every name and prefix among
//! them comes from [`super::keys`], and every script stays within one hash
//! slot (see [`super::cluster`]).

use deadpool_redis::redis::Script;

/// A script made of these files of `scripts/`, in order.
macro_rules! lua {
    ($($file:literal),+) => {
        Script::new(concat!($(include_str!(concat!("scripts/", $file, ".lua"))),+))
    };
}

pub(super) struct Scripts {
    pub(super) update_sa: Script,
    pub(super) delete_sa: Script,
    pub(super) put_cred: Script,
    pub(super) delete_cred: Script,
    pub(super) find_client: Script,
    pub(super) touch_creds: Script,
    pub(super) delete_ws: Script,
    pub(super) put_env: Script,
    pub(super) put_member: Script,
    pub(super) delete_env: Script,
    pub(super) list_envs: Script,
    pub(super) put_token: Script,
    /// `put_token` under an account's token limits.
    pub(super) put_token_limited: Script,
    /// Cluster: the index half of `put_token_limited`.
    pub(super) index_token_limited: Script,
    /// Cluster: the index half of `put_token`.
    pub(super) index_token: Script,
    /// Cluster: takes revoked tokens out of their account's index.
    pub(super) unindex_sa: Script,
    /// Cluster: one token key of a revocation, never another's marker.
    pub(super) revoke_tok: Script,
    /// Cluster: takes an account-less organization out of the index.
    pub(super) unindex_org: Script,
    pub(super) revoke_token: Script,
    pub(super) revoke_sa: Script,
    pub(super) revoke_org: Script,
    pub(super) count_tokens: Script,
    pub(super) lookup: Script,
    /// Cluster: the registry half of `lookup`.
    pub(super) lookup_registry: Script,
    pub(super) append_audit: Script,
    pub(super) list_audit: Script,
    pub(super) reserve_failure: Script,
    pub(super) forgive_failure: Script,
    pub(super) delete_akey: Script,
    pub(super) touch_akey: Script,
    pub(super) take_rate: Script,
    pub(super) take_quota: Script,
    pub(super) put_limits: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            update_sa: lua!("update_sa"),
            delete_sa: lua!("delete_sa"),
            put_cred: lua!("put_cred"),
            delete_cred: lua!("delete_cred"),
            find_client: lua!("find_client"),
            touch_creds: lua!("touch_creds"),
            delete_ws: lua!("delete_ws"),
            put_env: lua!("put_env"),
            put_member: lua!("put_member"),
            delete_env: lua!("delete_env"),
            list_envs: lua!("list_envs"),
            put_token: lua!(
                "lib/now_ms",
                "lib/issuer",
                "lib/issuer_or_0",
                "lib/index_token",
                "put_token"
            ),
            put_token_limited: lua!(
                "lib/now_ms",
                "lib/issuer",
                "lib/issuer_or_3",
                "lib/token_limits",
                "lib/index_token",
                "put_token_limited"
            ),
            index_token_limited: lua!(
                "lib/now_ms",
                "lib/issuer",
                "lib/issuer_or_3",
                "lib/token_limits",
                "lib/index_token",
                "index_token_limited"
            ),
            index_token: lua!(
                "lib/now_ms",
                "lib/issuer",
                "lib/issuer_or_0",
                "lib/index_token",
                "index_token"
            ),
            unindex_sa: lua!("unindex_sa"),
            revoke_tok: lua!("revoke_tok"),
            unindex_org: lua!("unindex_org"),
            revoke_token: lua!("revoke_token"),
            revoke_sa: lua!("revoke_sa"),
            revoke_org: lua!("revoke_org"),
            count_tokens: lua!("lib/now_ms", "count_tokens"),
            lookup: lua!("lib/field", "lib/env_role", "lib/pack", "lookup"),
            lookup_registry: lua!("lib/field", "lib/env_role", "lookup_registry"),
            append_audit: lua!("append_audit"),
            list_audit: lua!("list_audit"),
            reserve_failure: lua!("reserve_failure"),
            forgive_failure: lua!("forgive_failure"),
            delete_akey: lua!("delete_akey"),
            touch_akey: lua!("touch_akey"),
            take_rate: lua!("lib/now_ms", "take_rate"),
            take_quota: lua!("take_quota"),
            put_limits: lua!("put_limits"),
        }
    }
}
