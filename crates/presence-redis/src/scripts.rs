//! The Lua scripts (`src/lua/`, each prefixed by `prelude.lua`) and one typed call per script:
//! arguments in, reply parsed. Every call is one `EVALSHA` (`redis::Script` loads the script
//! after a `NOSCRIPT`), timed into the `roster_layer_redis_seconds` histogram by script.
//!
//! Knows the scripts' argument and reply shapes, nothing of the tasks that call them.

use std::time::Instant;

use presence::{UserId, UserRef};
use redis::aio::MultiplexedConnection;
use redis::{RedisError, Script, Value};

use crate::keys::Keys;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// Why a call did nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Fault {
    /// The incarnation named by the call no longer holds a live lease.
    #[error("fenced: this node's lease lapsed")]
    Fenced,
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("unexpected reply from the {0} script")]
    Reply(&'static str),
}

/// One presence op of a node, as the presence script takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Up(UserRef),
    Down { user: UserId, at: i64, logout: bool },
    EndGrace(UserId),
}

/// An account event, as the account script takes it.
pub(crate) struct AccountOp {
    pub n: u64,
    pub kind: &'static str,
    pub a: Vec<u8>,
    pub b: Vec<u8>,
}

impl AccountOp {
    /// `change` as the account script's op number `n`; `None` for a presence change.
    pub(crate) fn of(n: u64, change: &presence::event::Change) -> Option<AccountOp> {
        use presence::event::Change;
        let id = |id: &i64| id.to_string().into_bytes();
        let (kind, a, b) = match change {
            Change::SignedUp(u) => ("signup", id(&u.id), u.username.as_bytes().to_vec()),
            Change::Deleted(user) => ("del", id(user), Vec::new()),
            Change::CloseUser(user) => ("user", id(user), Vec::new()),
            Change::CloseSession(key) => ("sess", key.as_bytes().to_vec(), Vec::new()),
            Change::Up(_) | Change::Down { .. } | Change::EndGrace(_) => return None,
        };
        Some(AccountOp { n, kind, a, b })
    }
}

/// What a presence or retire call did.
#[derive(Debug)]
pub(crate) struct Applied {
    /// Redis's clock at the call (ms).
    pub now: i64,
    /// The earliest grace deadline the call started, if any.
    pub deadline: Option<i64>,
    /// Retire: users still in the withdrawn set.
    pub left: i64,
}

#[derive(Debug)]
pub(crate) struct Heartbeat {
    pub fenced: bool,
    pub now: i64,
    pub seq: u64,
    pub deadline: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct Swept {
    /// A live node exists, so a forced sweep did nothing.
    pub others_live: bool,
    pub now: i64,
    pub deadline: Option<i64>,
    pub removed: i64,
    pub offline: i64,
    pub more: bool,
    pub seq: u64,
    pub next_lapsed: Option<String>,
}

pub(crate) struct Registered {
    pub counter: i64,
    pub now: i64,
}

pub(crate) struct State {
    pub seq: u64,
    pub registered: Option<u64>,
    pub online: Vec<UserRef>,
}

pub(crate) struct Scripts {
    presence: Script,
    account: Script,
    register: Script,
    heartbeat: Script,
    retire: Script,
    sweep: Script,
    state: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            presence: script(include_str!("lua/presence.lua")),
            account: script(include_str!("lua/account.lua")),
            register: script(include_str!("lua/register.lua")),
            heartbeat: script(include_str!("lua/heartbeat.lua")),
            retire: script(include_str!("lua/retire.lua")),
            sweep: script(include_str!("lua/sweep.lua")),
            state: script(include_str!("lua/state.lua")),
        }
    }
}

/// Calls `script` with the fixed keys, `extra` as `KEYS[10]`, the channel as `ARGV[1]` and
/// `args`; times it.
async fn call(
    name: &'static str,
    script: &Script,
    keys: &Keys,
    conn: &mut MultiplexedConnection,
    extra: &str,
    args: &[Vec<u8>],
) -> Result<Vec<Value>, Fault> {
    let mut inv = script.prepare_invoke();
    for k in keys.fixed() {
        inv.key(k.as_str());
    }
    inv.key(extra).arg(keys.channel());
    for a in args {
        inv.arg(a.as_slice());
    }
    let started = Instant::now();
    let reply: Value = inv.invoke_async(conn).await?;
    metrics::histogram!("roster_layer_redis_seconds", "script" => name).record(started.elapsed().as_secs_f64());
    match reply {
        Value::Array(items) => Ok(items),
        _ => Err(Fault::Reply(name)),
    }
}

fn arg(v: impl ToString) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn int(items: &[Value], i: usize, name: &'static str) -> Result<i64, Fault> {
    match items.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        _ => Err(Fault::Reply(name)),
    }
}

fn deadline(n: i64) -> Option<i64> {
    (n >= 0).then_some(n)
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

impl Scripts {
    /// Applies `ops` to the SET of `set_inc`, fenced by the lease of `lease_inc`.
    pub async fn presence(
        &self,
        keys: &Keys,
        conn: &mut MultiplexedConnection,
        lease_inc: &str,
        set_inc: &str,
        grace_ms: u64,
        ops: &[Op],
    ) -> Result<Applied, Fault> {
        const NAME: &str = "presence";
        let mut args = Vec::with_capacity(2 + ops.len() * 3);
        args.push(arg(lease_inc));
        args.push(arg(grace_ms));
        for op in ops {
            let (kind, user, x) = match op {
                Op::Up(u) => ("U", u.id, u.username.as_bytes().to_vec()),
                Op::Down { user, at, logout } => (if *logout { "L" } else { "D" }, *user, arg(at)),
                Op::EndGrace(user) => ("E", *user, Vec::new()),
            };
            args.extend([arg(kind), arg(user), x]);
        }
        let r = call(NAME, &self.presence, keys, conn, &keys.node(set_inc), &args).await?;
        if int(&r, 0, NAME)? < 0 {
            return Err(Fault::Fenced);
        }
        Ok(Applied { now: int(&r, 1, NAME)?, deadline: deadline(int(&r, 2, NAME)?), left: 0 })
    }

    pub async fn account(
        &self,
        keys: &Keys,
        conn: &mut MultiplexedConnection,
        nonce: &str,
        ops: &[AccountOp],
    ) -> Result<(), Fault> {
        let mut args = Vec::with_capacity(ops.len() * 4);
        for op in ops {
            args.extend([arg(op.n), arg(op.kind), op.a.clone(), op.b.clone()]);
        }
        let mut inv = self.account.prepare_invoke();
        for k in keys.fixed() {
            inv.key(k.as_str());
        }
        inv.key(keys.ops(nonce)).arg(keys.channel());
        for a in &args {
            inv.arg(a.as_slice());
        }
        let started = Instant::now();
        let _mark: i64 = inv.invoke_async(conn).await?;
        metrics::histogram!("roster_layer_redis_seconds", "script" => "account")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    pub async fn register(
        &self,
        keys: &Keys,
        conn: &mut MultiplexedConnection,
        nonce: &str,
        lease_ms: u64,
        node_name: &str,
        registered: u64,
    ) -> Result<Registered, Fault> {
        const NAME: &str = "register";
        let args = [arg(nonce), arg(lease_ms), arg(node_name), arg(registered)];
        let r = call(NAME, &self.register, keys, conn, keys.seq(), &args).await?;
        Ok(Registered { counter: int(&r, 0, NAME)?, now: int(&r, 1, NAME)? })
    }

    pub async fn heartbeat(
        &self,
        keys: &Keys,
        conn: &mut MultiplexedConnection,
        inc: &str,
        lease_ms: u64,
    ) -> Result<Heartbeat, Fault> {
        const NAME: &str = "heartbeat";
        let r = call(NAME, &self.heartbeat, keys, conn, keys.seq(), &[arg(inc), arg(lease_ms)]).await?;
        Ok(Heartbeat {
            fenced: int(&r, 0, NAME)? < 0,
            now: int(&r, 1, NAME)?,
            seq: u64::try_from(int(&r, 2, NAME)?).unwrap_or(0),
            deadline: deadline(int(&r, 3, NAME)?),
        })
    }

    /// Withdraws a batch of `inc`'s users into the grace; fenced by `live_inc` if given.
    pub async fn retire(
        &self,
        keys: &Keys,
        conn: &mut MultiplexedConnection,
        inc: &str,
        live_inc: Option<&str>,
        grace_ms: u64,
        batch: usize,
    ) -> Result<Applied, Fault> {
        const NAME: &str = "retire";
        let args = [arg(inc), arg(live_inc.unwrap_or("")), arg(grace_ms), arg(batch)];
        let r = call(NAME, &self.retire, keys, conn, &keys.node(inc), &args).await?;
        if int(&r, 0, NAME)? < 0 {
            return Err(Fault::Fenced);
        }
        Ok(Applied { now: int(&r, 1, NAME)?, left: int(&r, 2, NAME)?, deadline: deadline(int(&r, 3, NAME)?) })
    }

    /// One sweep step; `lapsed` is the incarnation the previous step named.
    pub async fn sweep(
        &self,
        keys: &Keys,
        conn: &mut MultiplexedConnection,
        lapsed: Option<&str>,
        batch: usize,
        force: bool,
    ) -> Result<Swept, Fault> {
        const NAME: &str = "sweep";
        let set = lapsed.map_or_else(|| keys.seq().to_owned(), |inc| keys.node(inc));
        let args = [arg(lapsed.unwrap_or("")), arg(batch), arg(if force { "1" } else { "0" })];
        let r = call(NAME, &self.sweep, keys, conn, &set, &args).await?;
        Ok(Swept {
            others_live: int(&r, 0, NAME)? == -2,
            now: int(&r, 1, NAME)?,
            deadline: deadline(int(&r, 2, NAME)?),
            removed: int(&r, 3, NAME)?,
            offline: int(&r, 4, NAME)?,
            more: int(&r, 5, NAME)? != 0,
            seq: u64::try_from(int(&r, 6, NAME)?).unwrap_or(0),
            next_lapsed: r.get(7).and_then(bytes).map(|b| String::from_utf8_lossy(b).into_owned()),
        })
    }

    pub async fn state(&self, keys: &Keys, conn: &mut MultiplexedConnection) -> Result<State, Fault> {
        const NAME: &str = "state";
        let r = call(NAME, &self.state, keys, conn, keys.seq(), &[]).await?;
        let seq = u64::try_from(int(&r, 0, NAME)?).map_err(|_| Fault::Reply(NAME))?;
        let registered = u64::try_from(int(&r, 1, NAME)?).ok();
        let Some(Value::Array(flat)) = r.get(2) else { return Err(Fault::Reply(NAME)) };
        let mut online = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let id = bytes(&pair[0]).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok());
            let (Some(id), Some(name)) = (id, bytes(&pair[1])) else { return Err(Fault::Reply(NAME)) };
            online.push(UserRef::new(id, String::from_utf8_lossy(name).into_owned()));
        }
        online.sort_by_key(|u| u.id);
        Ok(State { seq, registered, online })
    }
}
