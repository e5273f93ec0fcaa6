//! The subcommands: `serve` (default), `config`, `migrate`,
//! `user create|list|set-password|delete|import-django`, and (in `cli/data.rs`) `backup` and `copy`.
//!
//! Passwords are read from a prompt (twice, hidden) or, when standard input is not a
//! terminal, from its first line; never from argv, where other users could see them.

mod data;

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use crate::accounts::{self, AccountError, Accounts, NewAccount, NewPassword, Reach, Username};
use crate::app::Application;
use crate::config::{Effective, Parsed};
use crate::settings::{redact_url, ClusterArgs, Command, DbArgs, ServeArgs, UserCommand};
use crate::store::Store;

pub async fn run(Parsed { cli, settings }: Parsed) -> anyhow::Result<()> {
    match cli.command {
        None => serve(cli.serve, &settings).await,
        Some(Command::Serve(args)) => serve(args, &settings).await,
        Some(Command::Config(_)) => {
            print!("{settings}");
            Ok(())
        }
        Some(Command::Migrate(db)) => {
            let store = open(&db).await?;
            store.migrate().await?;
            println!("Database {} ({}) is up to date.", redact_url(&db.database_url), store.backend());
            Ok(())
        }
        Some(Command::User(cmd)) => user(cmd).await,
        Some(Command::Backup { file, db }) => data::backup(&file, &db).await,
        Some(Command::Copy(args)) => data::copy(&args).await,
    }
}

async fn serve(args: ServeArgs, settings: &Effective) -> anyhow::Result<()> {
    crate::logging::init(args.log_format);
    if args.print_settings {
        print!("{settings}");
    }
    let app = Application::build(args).await?;
    tracing::info!("Roster serving on http://{}", app.local_addr());
    if let Some(addr) = app.metrics_addr() {
        tracing::info!("Roster metrics on http://{addr}/metrics");
    }
    let token = app.shutdown_token();
    tokio::spawn(stop_on_signal(token));
    app.run_until_stopped().await
}

/// Cancels `token` at SIGINT (Ctrl-C) or SIGTERM.
async fn stop_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
    token.cancel();
}

async fn open(db: &DbArgs) -> anyhow::Result<Store> {
    let store = Store::connect(&db.database_url)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(&db.database_url)))?;
    store.migrate().await?;
    Ok(store)
}

async fn find(store: &Store, name: &str) -> anyhow::Result<crate::store::User> {
    match store.user_by_key(&accounts::username_key(name)).await? {
        Some(u) => Ok(u),
        None => bail!("no user named {name:?}"),
    }
}

/// The account operations of a user command: over the command's database, telling the cluster
/// when given one (else servers notice within seconds).
async fn accounts(db: &DbArgs, cluster: &ClusterArgs) -> anyhow::Result<Accounts> {
    let reach = match &cluster.redis_url {
        Some(url) => {
            Reach::Cluster { redis_url: url.expose().to_owned(), key_prefix: cluster.redis_key_prefix.clone() }
        }
        None => Reach::Store,
    };
    Ok(Accounts::new(open(db).await?, reach))
}

/// Account errors as the CLI says them.
fn said(e: AccountError) -> anyhow::Error {
    match e {
        AccountError::UsernameTaken => anyhow::anyhow!("{}", accounts::DUPLICATE_USERNAME_MESSAGE),
        e => e.into(),
    }
}

async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create { username, staff, db, cluster } => {
            let name = Username::parse(&username).map_err(|e| anyhow::anyhow!("{e}"))?;
            let accounts = accounts(&db, &cluster).await?;
            let password = read_new_password(name.as_str())?;
            let u = accounts.sign_up(&name, password, staff).await.map_err(said)?;
            println!("Created user {} (id {}){}.", u.username, u.id, if staff { ", staff" } else { "" });
        }
        UserCommand::List { db } => {
            let store = open(&db).await?;
            println!(
                "{:>8}  {:<30} {:<6} {:<7} {:<21} {:<21}",
                "id", "username", "staff", "active", "last login", "last seen"
            );
            let mut after = 0;
            loop {
                let batch = store.list_all(after, 500).await?;
                let Some(last) = batch.last() else { break };
                after = last.id;
                for u in &batch {
                    let t = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), crate::web::pages::format_time);
                    println!(
                        "{:>8}  {:<30} {:<6} {:<7} {:<21} {:<21}",
                        u.id,
                        u.username,
                        if u.is_staff { "yes" } else { "no" },
                        if u.is_active { "yes" } else { "no" },
                        t(u.last_login),
                        t(u.last_seen)
                    );
                }
            }
        }
        UserCommand::SetPassword { username, db, cluster } => {
            let accounts = accounts(&db, &cluster).await?;
            let user = find(accounts.store(), &username).await?;
            let password = read_new_password(&user.username)?;
            let ended = accounts.set_password(&user, password).await.map_err(said)?;
            println!("Password changed for {}; {ended} session(s) logged out.", user.username);
        }
        UserCommand::Deactivate { username, db, cluster } => {
            let accounts = accounts(&db, &cluster).await?;
            let user = find(accounts.store(), &username).await?;
            let ended = accounts.set_active(user.id, false).await.map_err(said)?;
            println!("Deactivated {}; {ended} session(s) logged out.", user.username);
        }
        UserCommand::Activate { username, db, cluster } => {
            let accounts = accounts(&db, &cluster).await?;
            let user = find(accounts.store(), &username).await?;
            accounts.set_active(user.id, true).await.map_err(said)?;
            println!("Activated {}.", user.username);
        }
        UserCommand::Delete { username, db, cluster } => {
            let accounts = accounts(&db, &cluster).await?;
            let user = find(accounts.store(), &username).await?;
            accounts.delete(user.id).await.map_err(said)?;
            println!("Deleted user {} (id {}) and their sessions.", user.username, user.id);
        }
        UserCommand::ImportDjango { file, db } => {
            // Not announced account by account: the servers' reconcilers count the new accounts
            // within seconds (an import may hold 100,000 of them).
            let accounts = Accounts::new(open(&db).await?, Reach::Store);
            let data = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let accounts::Imported { users, errors } =
                accounts::import_csv(&data[..]).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            for e in &errors {
                eprintln!("skipped: {e}");
            }
            let (mut created, mut taken) = (0, 0);
            for u in users {
                let account = NewAccount {
                    username: &u.username,
                    password_hash: &u.password_hash,
                    is_staff: u.is_staff,
                    is_active: u.is_active,
                    date_joined: u.date_joined_ms,
                    last_login: u.last_login_ms,
                };
                match accounts.create(&account).await {
                    Ok(_) => created += 1,
                    Err(AccountError::UsernameTaken) => {
                        taken += 1;
                        eprintln!("skipped: {}: {}", u.username.as_str(), accounts::DUPLICATE_USERNAME_MESSAGE);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            println!("Imported {created} user(s); {taken} already existed; {} row(s) had errors.", errors.len());
            if !errors.is_empty() {
                bail!("{} row(s) could not be imported", errors.len());
            }
        }
    }
    Ok(())
}

/// Reads a new password (prompt twice on a terminal, else the first line of stdin) and checks
/// it against Django's validators.
fn read_new_password(username: &str) -> anyhow::Result<NewPassword> {
    let raw = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("Password: ")?;
        let b = rpassword::prompt_password("Password (again): ")?;
        if a != b {
            bail!("{}", accounts::PASSWORD_MISMATCH_MESSAGE);
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if raw.is_empty() {
        bail!("the password is empty");
    }
    NewPassword::parse(&raw, username)
        .map_err(|errors| anyhow::anyhow!(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")))
}
