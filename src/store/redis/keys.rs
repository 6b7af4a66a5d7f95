//! The key layout: every Redis key and channel name tollgate uses is built
//! here and nowhere else. Scripts are handed names and prefixes from here
//! and only append ids to them, joined by `:`.
//!
//! Key layout (`P` = `store.key_prefix`; ids never contain `:`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{reg}:sa:<org>` | hash | sa id → ServiceAccount JSON |
//! | `P:{reg}:cred:<org>:<sa>` | hash | credential id → StoredCredential JSON |
//! | `P:{reg}:client` | hash | client id → `"<org> <sa> <cred>"` |
//! | `P:{reg}:ws:<org>` | hash | workspace id → Workspace JSON |
//! | `P:{reg}:env` | hash | environment id → Environment JSON (ids are global) |
//! | `P:{reg}:wsenv:<org>:<ws>` | set | environment ids of the workspace |
//! | `P:{reg}:mem:<org>:<ws>` | hash | sa id → Membership JSON |
//! | `P:{reg}:samem:<org>:<sa>` | set | workspaces the account is a member of |
//! | `P:{reg}:satok:<org>:<sa>` | zset | token hashes scored by expiry (unix ms) |
//! | `P:{reg}:issue:<org>:<sa>` | zset | token hashes scored by issuance (unix ms), within the account's `token_issue_limit` window |
//! | `P:{reg}:toksa:<org>` | set | accounts that may have live tokens |
//! | `P:{reg}:tokorg` | set | organizations that may have live tokens |
//! | `P:{reg}:audit:<org>` | zset | event ids, score 0 (lexical = time order) |
//! | `P:{reg}:auditd:<org>` | hash | event id → AuditEvent JSON |
//! | `P:{reg}:akey` | hash | admin key id → StoredAdminKey JSON (ids are global) |
//! | `P:{reg}:akeyused` | hash | admin key id → `last_used_at` (unix seconds) |
//! | `P:tok:<hash>` | string | TokenRecord JSON, `EX` = token TTL |
//! | `P:{thr:<window>}:<key>` | string | failure counter, expires after two windows |
//! | `P:{reg}:salim:<org>` | hash | sa id → AccountLimits JSON (override, quotas) |
//! | `P:{rl:<bucket>}:<window>` | string | rate-limit counter of one window, expires after two |
//! | `P:{q:<org>:<sa>}:d:<day>` / `…:m:<month>` | string | quota counters (UTC day, month) |
//!
//! | channel | carries |
//! |---|---|
//! | `P:invalidate` | cache invalidations between instances (`crate::bus`) |
//!
//! The hash tags (`{reg}`, `{thr:<window>}`) decide where keys land on a
//! Redis Cluster; why they are placed so is in [`super::cluster`].

/// The pub/sub channel of cache invalidations.
pub(crate) fn invalidation_channel(prefix: &str) -> String {
    format!("{prefix}:invalidate")
}

/// The client-index value of a credential.
pub(super) fn client_ref(org: &str, sa: &str, cred: &str) -> String {
    format!("{org} {sa} {cred}")
}

/// What the client-index values of an account's credentials start with.
pub(super) fn client_ref_prefix(org: &str, sa: &str) -> String {
    format!("{org} {sa} ")
}

/// Key names of one store.
pub(super) struct Keys {
    prefix: String,
    /// `P:{reg}:`
    reg: String,
    /// The names every authorization look-up uses, built once.
    env: String,
    mem_prefix: String,
    tok_prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        let reg = format!("{prefix}:{{reg}}:");
        Keys {
            prefix: prefix.to_string(),
            env: format!("{reg}env"),
            mem_prefix: format!("{reg}mem:"),
            tok_prefix: format!("{prefix}:tok:"),
            reg,
        }
    }
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }
    /// What every `sa` key starts with (then `<org>`).
    pub(super) fn sa_root(&self) -> String {
        format!("{}sa:", self.reg)
    }
    pub(super) fn sa(&self, org: &str) -> String {
        format!("{}sa:{org}", self.reg)
    }
    /// What every `cred` key starts with (then `<org>:<sa>`).
    pub(super) fn cred_root(&self) -> String {
        format!("{}cred:", self.reg)
    }
    pub(super) fn cred(&self, org: &str, sa: &str) -> String {
        format!("{}cred:{org}:{sa}", self.reg)
    }
    pub(super) fn client(&self) -> String {
        format!("{}client", self.reg)
    }
    pub(super) fn ws(&self, org: &str) -> String {
        format!("{}ws:{org}", self.reg)
    }
    pub(super) fn env(&self) -> &str {
        &self.env
    }
    pub(super) fn wsenv(&self, org: &str, ws: &str) -> String {
        format!("{}wsenv:{org}:{ws}", self.reg)
    }
    /// What every `mem` key starts with (then `<org>:<ws>`).
    pub(super) fn mem_prefix(&self) -> &str {
        &self.mem_prefix
    }
    /// What the organization's `mem` keys start with (then `<ws>`).
    pub(super) fn mem_org_prefix(&self, org: &str) -> String {
        format!("{}{org}:", self.mem_prefix)
    }
    pub(super) fn mem(&self, org: &str, ws: &str) -> String {
        format!("{}mem:{org}:{ws}", self.reg)
    }
    pub(super) fn samem_prefix(&self, org: &str) -> String {
        format!("{}samem:{org}:", self.reg)
    }
    pub(super) fn samem(&self, org: &str, sa: &str) -> String {
        format!("{}samem:{org}:{sa}", self.reg)
    }
    /// What every `satok` key starts with (then `<org>:<sa>`).
    pub(super) fn satok_root(&self) -> String {
        format!("{}satok:", self.reg)
    }
    pub(super) fn satok_prefix(&self, org: &str) -> String {
        format!("{}satok:{org}:", self.reg)
    }
    pub(super) fn satok(&self, org: &str, sa: &str) -> String {
        format!("{}satok:{org}:{sa}", self.reg)
    }
    /// The account's issuances within its `token_issue_limit` window.
    pub(super) fn issue(&self, org: &str, sa: &str) -> String {
        format!("{}issue:{org}:{sa}", self.reg)
    }
    pub(super) fn toksa_prefix(&self) -> String {
        format!("{}toksa:", self.reg)
    }
    pub(super) fn toksa(&self, org: &str) -> String {
        format!("{}toksa:{org}", self.reg)
    }
    pub(super) fn tokorg(&self) -> String {
        format!("{}tokorg", self.reg)
    }
    pub(super) fn audit(&self, org: &str) -> String {
        format!("{}audit:{org}", self.reg)
    }
    pub(super) fn auditd(&self, org: &str) -> String {
        format!("{}auditd:{org}", self.reg)
    }
    pub(super) fn tok_prefix(&self) -> &str {
        &self.tok_prefix
    }
    pub(super) fn tok(&self, hash: &str) -> String {
        let mut key = String::with_capacity(self.tok_prefix.len() + hash.len());
        key.push_str(&self.tok_prefix);
        key.push_str(hash);
        key
    }
    /// One window's counters share a slot, so reserving a failure (several
    /// counters) is one script on a Redis Cluster too.
    pub(super) fn thr(&self, window: i64, key: &str) -> String {
        format!("{}:{{thr:{window}}}:{key}", self.prefix)
    }
    /// Admin keys made through the admin API.
    pub(super) fn akey(&self) -> String {
        format!("{}akey", self.reg)
    }
    pub(super) fn akey_used(&self) -> String {
        format!("{}akeyused", self.reg)
    }
    /// An account's limits, beside its record in the `{reg}` slot.
    pub(super) fn salim(&self, org: &str) -> String {
        format!("{}salim:{org}", self.reg)
    }
    /// A rate-limit counter's root: each bucket has its own slot, so the
    /// counters spread over a cluster; the script appends the window.
    pub(super) fn rl(&self, bucket: &str) -> String {
        format!("{}:{{rl:{bucket}}}", self.prefix)
    }
    /// One quota counter; an account's day and month share a slot.
    pub(super) fn quota(&self, org: &str, sa: &str, period: &str, label: &str) -> String {
        format!("{}:{{q:{org}:{sa}}}:{period}:{label}", self.prefix)
    }
}
