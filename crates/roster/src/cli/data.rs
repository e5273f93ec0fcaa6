//! `roster backup FILE` and `roster copy --to URL`: taking the data somewhere else, a new SQLite
//! file or a PostgreSQL database. The work is in the store (`store/backup.rs`,
//! `store/copy.rs`); this file checks what the operator asked for, opens the databases and
//! says what happened. Database URLs are only ever shown through `redact_url`.

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context};
use sqlx::sqlite::SqliteConnectOptions;

use crate::settings::{redact_url, CopyArgs, DbArgs};
use crate::store::{CopyError, Store};

pub async fn backup(file: &Path, db: &DbArgs) -> anyhow::Result<()> {
    let url = &db.database_url;
    if is_postgres(url) {
        bail!(
            "roster backup copies a SQLite database, and {} is PostgreSQL: use pg_dump, e.g. \
             `pg_dump --format=custom --file=roster.dump \"$ROSTER_DATABASE_URL\"`",
            redact_url(url)
        );
    }
    // Checked before touching the database; SQLite also refuses an existing file, which covers
    // one created in between.
    if file.symlink_metadata().is_ok() {
        bail!("{} already exists; roster backup never overwrites a file", file.display());
    }
    let store = open_existing(url).await?;
    store.backup_into(file).await.with_context(|| format!("cannot write the backup {}", file.display()))?;
    store.close().await;
    println!("Backed up {} to {}.", redact_url(url), file.display());
    Ok(())
}

pub async fn copy(args: &CopyArgs) -> anyhow::Result<()> {
    let (from, to) = (&args.db.database_url, &args.to);
    if !is_postgres(to) {
        bail!("roster copy --to takes a PostgreSQL URL (postgres://user:pass@host/db), not {}", redact_url(to));
    }
    let source = open_existing(from).await?;
    source.migrate().await?;
    let target =
        Store::connect(to).await.with_context(|| format!("cannot open the target database {}", redact_url(to)))?;
    let copied = match source.copy_into(&target, args.merge).await {
        Ok(copied) => copied,
        Err(e @ CopyError::TargetNotEmpty { .. }) => bail!(
            "{e} ({}); nothing was copied. Pass --merge to copy into it anyway, updating rows with the same \
             id and keeping the others.",
            redact_url(to)
        ),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("nothing was copied to {}", redact_url(to)))),
    };
    source.close().await;
    target.close().await;
    println!(
        "Copied {} user(s) and {} session(s) from {} to {}; the next new user gets id {}.",
        copied.users,
        copied.sessions,
        redact_url(from),
        redact_url(to),
        copied.next_user_id
    );
    Ok(())
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens a database that must already exist: connecting to a missing SQLite file would create
/// an empty one and back up or copy nothing.
async fn open_existing(url: &str) -> anyhow::Result<Store> {
    if url.starts_with("sqlite:") {
        let options =
            SqliteConnectOptions::from_str(url).with_context(|| format!("{} is not a SQLite URL", redact_url(url)))?;
        let path = options.get_filename();
        if !path.exists() {
            bail!("there is no SQLite database at {} (from {})", path.display(), redact_url(url));
        }
    }
    Store::connect(url).await.with_context(|| format!("cannot open the database {}", redact_url(url)))
}
