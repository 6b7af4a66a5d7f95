//! Admin keys made through the admin API: one hash of records by key id
//! (ids are global, so a presented key is found without its organization)
//! and one of `last_used_at`, kept apart because it changes on use. Both
//! live under the `{reg}` tag, so a deletion takes both in one script.

use std::collections::HashMap;

use deadpool_redis::redis;
use time::OffsetDateTime;

use super::codec::{decode, encode};
use super::RedisStore;
use crate::model::StoredAdminKey;
use crate::store::StoreResult;

const WHAT: &str = "admin key";

fn with_last_used(mut key: StoredAdminKey, used: Option<&String>) -> StoredAdminKey {
    key.last_used_at = used
        .and_then(|u| u.parse::<i64>().ok())
        .and_then(|u| OffsetDateTime::from_unix_timestamp(u).ok());
    key
}

impl RedisStore {
    pub(super) async fn admin_key_put(&self, key: &StoredAdminKey) -> StoreResult<()> {
        let mut record = key.clone();
        record.last_used_at = None;
        let _: i64 = self
            .query(
                "put_admin_key",
                redis::cmd("HSET")
                    .arg(self.keys.akey())
                    .arg(&key.id)
                    .arg(encode(WHAT, &record)?),
            )
            .await?;
        Ok(())
    }

    pub(super) async fn admin_key_get(&self, id: &str) -> StoreResult<Option<StoredAdminKey>> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(self.keys.akey())
            .arg(id)
            .cmd("HGET")
            .arg(self.keys.akey_used())
            .arg(id);
        let (raw, used): (Option<String>, Option<String>) =
            self.pipe("get_admin_key", &pipe).await?;
        raw.map(|r| decode::<StoredAdminKey>(WHAT, &r).map(|k| with_last_used(k, used.as_ref())))
            .transpose()
    }

    pub(super) async fn admin_key_list(&self, org: &str) -> StoreResult<Vec<StoredAdminKey>> {
        let mut pipe = redis::pipe();
        pipe.cmd("HVALS")
            .arg(self.keys.akey())
            .cmd("HGETALL")
            .arg(self.keys.akey_used());
        let (raw, used): (Vec<String>, HashMap<String, String>) =
            self.pipe("list_admin_keys", &pipe).await?;
        let mut keys = Vec::new();
        for r in raw {
            let key: StoredAdminKey = decode(WHAT, &r)?;
            if key.organization_id == org {
                let at = used.get(&key.id);
                keys.push(with_last_used(key, at));
            }
        }
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(keys)
    }

    pub(super) async fn admin_key_delete(&self, org: &str, id: &str) -> StoreResult<bool> {
        let n: i64 = self
            .invoke(
                "delete_admin_key",
                self.scripts
                    .delete_akey
                    .key(self.keys.akey())
                    .key(self.keys.akey_used())
                    .arg(id)
                    .arg(org),
            )
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn admin_key_touch(&self, id: &str, at_unix: i64) -> StoreResult<()> {
        let _: i64 = self
            .invoke(
                "touch_admin_key",
                self.scripts
                    .touch_akey
                    .key(self.keys.akey())
                    .key(self.keys.akey_used())
                    .arg(id)
                    .arg(at_unix),
            )
            .await?;
        Ok(())
    }
}
