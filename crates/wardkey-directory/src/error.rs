//! What goes wrong with a directory, in sentences an admin can act on.

/// Directory errors. None of them is the user's fault: a sign-in that
/// meets one is not counted as a failed attempt.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A setting cannot be used.
    #[error("directory source {name:?}: {message}")]
    Config {
        /// The source's name.
        name: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// No answer, TLS failed, or the connection broke.
    #[error("cannot reach directory {name:?} at {url}: {error}")]
    Unreachable {
        /// The source's name.
        name: String,
        /// Its URL.
        url: String,
        /// What the client said.
        error: String,
    },
    /// The service account's password is wrong (or the account is locked).
    #[error(
        "directory {name:?} refused the service account {bind_dn:?}: check bind_dn and its password \
         (bind_password_file) in wardkey.toml"
    )]
    ServiceBind {
        /// The source's name.
        name: String,
        /// The service account.
        bind_dn: String,
    },
    /// The directory answered with an error.
    #[error("directory {name:?} refused the {what}: LDAP result {rc} {text}")]
    Refused {
        /// The source's name.
        name: String,
        /// The operation.
        what: String,
        /// LDAP result code.
        rc: u32,
        /// The directory's diagnostic text.
        text: String,
    },
    /// The search found no user at all while Wardkey has users from it.
    #[error(
        "directory {name:?}: the search found no users, so the sync stopped and changed nothing; \
         check base_dn and user_filter"
    )]
    NothingFound {
        /// The source's name.
        name: String,
    },
    /// The sync would disable more users than `max_disable_share` allows.
    #[error(
        "directory {name:?}: the sync would disable {would} of {enabled} enabled users, more than \
         directory.max_disable_share allows ({allowed}), so it stopped and changed nothing. If the directory \
         is right, run `wardkey directory sync --force`; otherwise check base_dn and user_filter"
    )]
    TooManyDisabled {
        /// The source's name.
        name: String,
        /// Users it would disable.
        would: usize,
        /// The source's enabled users now.
        enabled: usize,
        /// The most it may disable.
        allowed: usize,
    },
    /// No `[[directory.ldap]]` source has this name.
    #[error("no directory source is called {0:?}: see [[directory.ldap]] in wardkey.toml")]
    UnknownSource(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] wardkey_store::StoreError),
}
