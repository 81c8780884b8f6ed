//! The federated user directory's endpoints: kith's own, BWI's and MSC4258's.

/// `GET /_matrix/federation/unstable/io.kith.user_directory/changes`: a page of a
/// server's exported users, a snapshot first and then what changed.
pub mod get_changes {
    use ruma::api::federation::authentication::ServerSignatures;
    use ruma::api::{metadata, request, response};
    use serde::{Deserialize, Serialize};

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_matrix/federation/unstable/io.kith.user_directory/changes",
    }

    #[request]
    pub struct Request {
        /// Where the reader stands; none starts a snapshot.
        #[ruma_api(query)]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub since: Option<String>,

        #[ruma_api(query)]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub limit: Option<usize>,
    }

    #[response]
    pub struct Response {
        pub users: Vec<ChangedUser>,
        pub next_batch: String,
        /// More follow.
        pub limited: bool,
    }

    /// An upsert `{user_id, displayname, avatar_url}` (absent fields left out) or a
    /// tombstone `{user_id, deleted: true}`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ChangedUser {
        pub user_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub displayname: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub avatar_url: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub deleted: bool,
    }
}

/// `GET /_matrix/federation/unstable/de.bwi.federated_user_dir/user_directory/search`:
/// every exported user at once, as Synapse with BWI's module serves them.
pub mod get_bwi_list {
    use ruma::api::federation::authentication::ServerSignatures;
    use ruma::api::{metadata, request, response};
    use serde::{Deserialize, Serialize};

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_matrix/federation/unstable/de.bwi.federated_user_dir/user_directory/search",
    }

    #[request]
    #[derive(Default)]
    pub struct Request {}

    #[response]
    pub struct Response {
        pub results: Vec<BwiUser>,
    }

    /// kith's upsert with its name field named `display_name`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct BwiUser {
        pub user_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub display_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub avatar_url: Option<String>,
    }
}

/// `POST /_matrix/federation/unstable/org.matrix.msc4258/user_directory/search`: a
/// peer's live search of this server's exported users.
pub mod search {
    use ruma::OwnedUserId;
    use ruma::api::federation::authentication::ServerSignatures;
    use ruma::api::{metadata, request, response};
    use ruma::serde::Raw;
    use serde::{Deserialize, Serialize};

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_matrix/federation/unstable/org.matrix.msc4258/user_directory/search",
    }

    #[request]
    pub struct Request {
        pub requester: OwnedUserId,
        pub search_term: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub limit: Option<u64>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {
        #[serde(default)]
        pub limited: bool,
        /// Each hit read on its own: one a peer got wrong does not lose the others.
        pub results: Vec<Raw<SearchHit>>,
    }

    /// A hit; an absent name or avatar is `null`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct SearchHit {
        pub user_id: String,
        pub display_name: Option<String>,
        pub avatar_url: Option<String>,
    }
}
