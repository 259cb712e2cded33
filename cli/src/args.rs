//! The command line: every flag and command, as clap parses them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rewind_snapshotter::api::Mode;

use crate::target::Access;

/// Rewind's operator tool: list, diff, browse and restore any point in a bucket's history.
///
/// Times (--at, --from, --to) accept RFC 3339 (2026-11-25T09:41:00Z), now, relative times
/// (-15m, -2h, -3d, -1w), a journal position (seq:1234), or a snapshot name.
#[derive(Debug, Parser)]
#[command(name = "rewind", version)]
pub struct Cli {
    /// The gateway's admin API.
    #[arg(long, env = "REWIND_ADMIN_URL", default_value = "http://127.0.0.1:9001", global = true)]
    pub admin_url: String,
    /// The admin token. Prefer --admin-token-file: a token on the command line is visible
    /// to other users in `ps`.
    #[arg(long, env = "REWIND_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
    /// A file holding the admin token [default: ./rewind-data/admin-token when it exists].
    #[arg(long, env = "REWIND_ADMIN_TOKEN_FILE", value_name = "FILE", global = true, conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// Work offline on a stopped gateway's data directory instead of through its admin API.
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: a shared journal (postgres://user@host:port/database; the password
    /// in REWIND_JOURNAL_PASSWORD) instead of the one under the data directory.
    #[arg(long, value_name = "URL", global = true)]
    pub journal: Option<String>,
    /// With --data-dir: the gateway's configuration file (upstream, vault, protection).
    #[arg(long, env = "REWIND_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keys, sizes, ETags and times of a bucket as of an instant; without --bucket, the
    /// buckets with history.
    Ls {
        /// The bucket [default: list the buckets].
        #[arg(long)]
        bucket: Option<String>,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// The instant [default: now].
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
    },
    /// Every version of a key: seq, time, operation, size, client access key, request id.
    Log {
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// The key.
        #[arg(long)]
        key: String,
    },
    /// Keys added, changed and deleted between two instants.
    Diff {
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// The earlier instant.
        #[arg(long, allow_hyphen_values = true)]
        from: String,
        /// The later instant [default: now].
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// One version's bytes, to standard output.
    Cat {
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// The key.
        #[arg(long)]
        key: String,
        /// The instant [default: now].
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
    },
    /// Put a bucket, a prefix or one key back as it was at an instant.
    Restore(RestoreArgs),
    /// Revert what one client access key changed in a window of time (stolen keys, a bad
    /// job): each key it changed goes back to how it was before; keys others changed since
    /// are listed as conflicts and left alone.
    Undo(UndoArgs),
    /// Incidents the ransomware tripwire opened: list, show, acknowledge.
    #[command(subcommand)]
    Incidents(IncidentsCommand),
    /// Named restore points.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Time-travel views: read-only S3 keys that show a bucket as it was at an instant.
    #[command(subcommand)]
    View(ViewCommand),
    /// Check the journal's hash chain and checkpoints, and that every chunk is in the vault.
    Verify {
        /// Also read, decrypt and re-hash every chunk.
        #[arg(long)]
        read_data: bool,
        /// Read only this share of the chunks, e.g. 10%.
        #[arg(long, value_name = "PERCENT", conflicts_with = "read_data")]
        read_data_subset: Option<String>,
    },
    /// Journal head, checkpoints, vault size and dedup, and each bucket's objects.
    Status,
    /// Capture what the upstream holds that the journal lacks (objects written before Rewind
    /// or behind its back) and record keys deleted behind its back. Resumable.
    Reconcile {
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// Keys reconciled at once [default: protection.reconcile_parallel].
        #[arg(long)]
        parallel: Option<u64>,
        /// Most objects captured per second [default: protection.reconcile_objects_per_second].
        #[arg(long)]
        objects_per_second: Option<u64>,
        /// Most bytes read from the upstream per second, e.g. 50MB [default:
        /// protection.reconcile_bytes_per_second].
        #[arg(long, value_parser = parse_size)]
        bytes_per_second: Option<u64>,
    },
    /// Apply the retention policy ([retention] in the configuration): removes from the
    /// journal (and its copy in the vault) the history no promised instant needs; `rewind
    /// gc` then reclaims the bytes only it used. With --dry-run, only show per bucket what
    /// it would expire (versions, and the vault bytes only they hold).
    Forget {
        /// Only this bucket [default: every bucket with history].
        #[arg(long)]
        bucket: Option<String>,
        /// Show what would be expired, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Garbage collection of the vault: condemns packs no journaled version or upload in
    /// progress uses (cut or refused uploads, versions `forget` expired), and deletes those
    /// condemned at least retention.gc_grace ago. With --dry-run, only shows what the
    /// retention policy leaves to reclaim.
    Gc {
        /// Show what would be reclaimed, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Legal holds: every version of the keys under a hold is kept, whatever the retention
    /// policy says, until the hold is lifted.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Create the vault and its key file in --data-dir without serving anything.
    Init,
    /// The journal itself: `rewind journal migrate --from DIR --to postgres://...`.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// The vault's mirrors: `rewind vault mirror ls|sync|verify|add` (from the vaults
    /// alone, also while gateways run; the mirrors are those --config and
    /// REWIND_VAULT_MIRRORS name).
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Rebuild a data directory (journal, indexes) from the vault alone, after losing the
    /// gateway host: `rewind rebuild --vault DIR|s3://... --key-file FILE --data-dir NEW`.
    Rebuild {
        /// The vault: a directory, or s3://bucket/prefix (endpoint and credentials from
        /// REWIND_VAULT_* or --config).
        #[arg(long)]
        vault: String,
        /// The vault's key file [default: NEW/vault.key; or REWIND_VAULT_PASSPHRASE].
        #[arg(long, env = "REWIND_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
}

/// `rewind restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The bucket whose history is restored.
    #[arg(long)]
    pub bucket: String,
    /// The instant to restore to.
    #[arg(long, allow_hyphen_values = true)]
    pub at: String,
    /// Only keys under this prefix.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Only this key.
    #[arg(long)]
    pub key: Option<String>,
    /// Write into this bucket instead (it must be protected by the gateway).
    #[arg(long, conflicts_with = "to_dir")]
    pub to_bucket: Option<String>,
    /// Write the objects as files under this directory instead.
    #[arg(long, value_name = "DIR")]
    pub to_dir: Option<PathBuf>,
    /// non-destructive: only write keys missing now. rewind: also overwrite changed keys and
    /// delete keys that did not exist at the instant.
    #[arg(long, value_enum, default_value_t = Mode::NonDestructive)]
    pub mode: Mode,
    /// Show the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Objects restored at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
}

/// `rewind undo`.
#[derive(Debug, Args)]
pub struct UndoArgs {
    /// Revert what a tripwire incident names: its client key's changes to its bucket since
    /// the incident's first position (`rewind incidents ls`).
    #[arg(long, conflicts_with_all = ["actor", "bucket", "since"])]
    pub incident: Option<String>,
    /// The client access key id whose changes are reverted.
    #[arg(long, required_unless_present = "incident")]
    pub actor: Option<String>,
    /// The bucket [default: every bucket the key changed in the window].
    #[arg(long)]
    pub bucket: Option<String>,
    /// Only keys under this prefix.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Changes after this instant (a time, seq:N, or a snapshot name).
    #[arg(long, allow_hyphen_values = true, required_unless_present = "incident")]
    pub since: Option<String>,
    /// ...and at or before this one [default: now].
    #[arg(long, allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Also revert keys others changed afterwards (their changes are lost).
    #[arg(long)]
    pub force: bool,
    /// Show the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Objects written at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
}

/// What a hold covers: one key, a prefix, or (neither given) the whole bucket.
#[derive(Debug, Args)]
pub struct HoldTarget {
    /// The bucket.
    #[arg(long)]
    pub bucket: String,
    /// Every key under this prefix.
    #[arg(long, conflicts_with = "key")]
    pub prefix: Option<String>,
    /// This one key.
    #[arg(long)]
    pub key: Option<String>,
}

/// `rewind vault ...`.
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// The vault's mirrors.
    #[command(subcommand)]
    Mirror(MirrorCommand),
}

/// `rewind vault mirror ...`.
#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Each mirror and how far it is behind the primary vault (objects, packs, journal
    /// positions).
    Ls,
    /// Copy to each mirror (or --mirror N) what it lacks; with --repair, also replace what
    /// `verify --read-data` finds damaged there with the primary's copy.
    Sync {
        /// Only this mirror (its number in `ls`).
        #[arg(long)]
        mirror: Option<usize>,
        /// Replace damaged objects too (reads every object of the mirror).
        #[arg(long)]
        repair: bool,
    },
    /// Check each mirror (or --mirror N): what it lacks of the primary and, with
    /// --read-data, every object's bytes (packs against their content names, on their own).
    Verify {
        /// Only this mirror.
        #[arg(long)]
        mirror: Option<usize>,
        /// Read every object.
        #[arg(long)]
        read_data: bool,
    },
    /// Seed a new mirror at LOCATION (a directory, or s3://bucket/prefix with the primary
    /// vault's endpoint and credentials) with everything the primary holds; resumable.
    /// Then add it to vault.mirrors so gateways keep it current.
    Add {
        /// Where the new mirror is.
        location: String,
    },
}

/// `rewind journal ...`.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Copy a stopped gateway's journal into a PostgreSQL database, where several gateways
    /// can share it (docs/SCALE.md); checked at the end (same head and entries, verify).
    /// Interrupted, run it again: copying is idempotent.
    Migrate {
        /// The stopped gateway's data directory (its journal, vault and key file, or what
        /// --config names).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The database: postgres://user@host:port/database (the password in
        /// REWIND_JOURNAL_PASSWORD).
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

/// `rewind hold ...`.
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Place a hold.
    Add {
        /// What it covers.
        #[command(flatten)]
        target: HoldTarget,
        /// Why (a case number, a ticket).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a hold (the history it kept is then subject to the policy again).
    Rm {
        /// What it covers.
        #[command(flatten)]
        target: HoldTarget,
    },
    /// Every hold.
    Ls,
}

/// `rewind snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Name an instant (default: now).
    Create {
        /// The name: a letter, then letters, digits, '.', '_' or '-'.
        name: String,
        /// The instant [default: now].
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
    },
    /// Every snapshot.
    List,
    /// Remove a snapshot's name (the history stays).
    Delete {
        /// The name.
        name: String,
    },
}

/// `rewind incidents ...`.
#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// Every incident, newest first.
    Ls,
    /// One incident: who, where, which positions, what fired.
    Show {
        /// The incident's id.
        id: String,
    },
    /// Acknowledge an incident: in protect mode, its client key may write again.
    Ack {
        /// The incident's id.
        id: String,
    },
}

/// `rewind view ...`.
#[derive(Debug, Subcommand)]
pub enum ViewCommand {
    /// Make a view: prints an access key pair that reads BUCKET as it was at --at.
    Create {
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// The instant [default: now]; a relative time is fixed to a journal position now.
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
        /// How long the view stays open (it keeps the history it shows from retention).
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
    /// The open views.
    Ls,
    /// Remove a view: its key stops working at once.
    Rm {
        /// The view's access key id.
        access_key_id: String,
    },
}

impl Command {
    /// What the command needs offline: reads open the data read-only; restores into a
    /// bucket plan against the upstream and write through the capture engine.
    pub(crate) fn access(&self) -> Access {
        match self {
            Self::Ls { .. } | Self::Log { .. } | Self::Diff { .. } | Self::Cat { .. } => Access::Read,
            Self::Verify { .. } | Self::Status => Access::Read,
            Self::Snapshot(SnapshotCommand::List)
            | Self::Forget { dry_run: true, .. }
            | Self::Gc { dry_run: true, .. } => Access::Read,
            Self::Hold(HoldCommand::Ls) | Self::View(ViewCommand::Ls) => Access::Read,
            Self::Incidents(IncidentsCommand::Ack { .. }) => Access::Write,
            Self::Incidents(_) => Access::Read,
            Self::View(_) => Access::Write,
            Self::Restore(args) if args.to_dir.is_some() => Access::Read,
            Self::Snapshot(_) | Self::Hold(_) | Self::Init | Self::Rebuild { .. } => Access::Write,
            Self::Journal(_) | Self::Vault(_) => Access::Read,
            Self::Forget { .. } | Self::Gc { .. } => Access::Write,
            Self::Restore(_) | Self::Undo(_) | Self::Reconcile { .. } => Access::Upstream,
        }
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    rewind_config::ByteSize::parse(text).map(|b| b.0)
}
