//! Test doubles of two directory APIs that idplex pulls users and groups from, served over HTTP
//! on loopback: the Google Admin SDK Directory API (v1) with Google's OAuth token endpoint
//! (service-account JWT assertions, domain-wide delegation), and Microsoft Graph (v1.0) with the
//! Microsoft identity platform's token endpoint (client credentials).
//!
//! Both serve one [`Directory`]: users, groups and memberships behind an `Arc<Mutex<..>>` that a
//! test changes between sync passes (a `Directory` is a cheap handle; clones share the state).
//! Every change gets a version number from a change log kept in the state, which is what Graph's
//! delta tokens are. [`Directory::generate`] builds a deterministic directory from a seed.
//!
//! Each server ([`GoogleApi`], [`GraphApi`]) binds `127.0.0.1:0`, is listening when `start`
//! returns, and stops accepting when dropped (connections a client keeps alive may linger until
//! it closes them). Its [`Faults`] inject throttling, outages, failures,
//! dropped connections, token expiry and delta-token expiry into the data endpoints; its
//! [`Stats`] count what was served.
//!
//! # Google (`GoogleApi`)
//! * `POST {base}/token`: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`.
//!   The JWT must be RS256-signed by the service account's key ([`GoogleCreds::generate`] makes
//!   one, and [`GoogleApi::key_file`] is the JSON key file Google would give, `token_uri`
//!   pointing here), `iss` = client_email, `aud` = the token URL, `iat`/`exp` current and at most
//!   an hour apart, `scope` space-separated and (when `sub` is set) all among the scopes the
//!   delegation grants, `sub` = the delegated admin. A token without `sub` is issued (it is the
//!   service account's own), but the Directory API answers it 403, as Google does.
//! * `GET {base}/admin/directory/v1/users?customer=my_customer|<id>` or `?domain=..`
//!   (`maxResults` 1–500, default 100; `pageToken`; `orderBy=email`; `sortOrder`; `projection`),
//!   `…/users/{userKey}`, `…/groups` (`maxResults` ≤ 200), `…/groups/{groupKey}`,
//!   `…/groups/{groupKey}/members` (`maxResults` ≤ 200, `roles`). Keys are an id or an email.
//!   A token needs the matching scope: `admin.directory.user[.readonly]` for users,
//!   `admin.directory.group[.readonly]` for groups, either that or
//!   `admin.directory.group.member[.readonly]` for members (else 403 `insufficientPermissions`).
//!   Empty lists omit their array (`users`, `groups`, `members`), as Google's JSON does; int64
//!   fields (`directMembersCount`) are strings.
//!
//! # Microsoft Graph (`GraphApi`)
//! * `POST {base}/{tenant}/oauth2/v2.0/token`: `grant_type=client_credentials`, `client_id`,
//!   `client_secret` (or HTTP Basic), `scope=https://graph.microsoft.com/.default`.
//! * `GET {base}/v1.0/users` (`$select`, `$top` 1–999 default 100, `$expand=manager`),
//!   `/v1.0/users/{id}`, `/v1.0/groups`, `/v1.0/groups/{id}/members`, `/v1.0/users/delta`,
//!   `/v1.0/groups/delta` (also as `…/microsoft.graph.delta()`). Lists page with an absolute
//!   `@odata.nextLink` (`$skiptoken`) on this server's base URL. Without `$select`, users carry
//!   Graph's default property set only (no `accountEnabled`, `department`, `employeeId`).
//!   Delta pages are sized by `Prefer: odata.maxpagesize=N` (default 200, at most 999; `$top`
//!   is accepted and ignored there); the last page has an `@odata.deltaLink` (`$deltatoken`);
//!   `$deltatoken=latest` gives a deltaLink and no data. Changed objects come whole (their
//!   selected properties); deleted ones as `{"id", "@removed": {"reason": "changed"|"deleted"}}`.
//!   Group objects carry `members@delta` (all members in the first pass, the net additions and
//!   `@removed` members after): at most 500 per object (settable), a larger group continuing in
//!   further objects with only `id` and `members@delta`. An expired or unknown token gives 410
//!   Gone (`syncStateNotFound`, inner `resyncRequired`) with a `Location` to start over.
//!   The app's roles ([`GraphCreds::roles`]) gate the endpoints: `User.Read.All` (or
//!   `Directory.Read.All`…) for users, `GroupMember.Read.All`/`Group.Read.All` for groups.

// Handlers' helpers return a ready `Response` as their error.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use serde_json::{Value, json};

/// Google's read-only Directory API scopes, and the read-write ones (which also allow reading).
pub const SCOPE_USER_READONLY: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly";
pub const SCOPE_GROUP_READONLY: &str = "https://www.googleapis.com/auth/admin.directory.group.readonly";
pub const SCOPE_GROUP_MEMBER_READONLY: &str = "https://www.googleapis.com/auth/admin.directory.group.member.readonly";
pub const SCOPE_USER: &str = "https://www.googleapis.com/auth/admin.directory.user";
pub const SCOPE_GROUP: &str = "https://www.googleapis.com/auth/admin.directory.group";
pub const SCOPE_GROUP_MEMBER: &str = "https://www.googleapis.com/auth/admin.directory.group.member";
/// The three read-only scopes a directory sync needs.
pub const GOOGLE_SYNC_SCOPES: [&str; 3] = [SCOPE_USER_READONLY, SCOPE_GROUP_READONLY, SCOPE_GROUP_MEMBER_READONLY];
/// The `grant_type` of a service-account assertion (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The only scope of a client-credentials token for Graph.
pub const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Graph's default page size for delta queries and its ceiling.
const GRAPH_DELTA_PAGE: usize = 200;
const GRAPH_MAX_PAGE: usize = 999;
/// `members@delta` entries per group object of a delta page, by default.
const GRAPH_DELTA_MEMBERS_PER_OBJECT: u64 = 500;

// ---------------------------------------------------------------------------------------------
// The directory
// ---------------------------------------------------------------------------------------------

/// A user as both APIs see it. Google: `primaryEmail`, `name`, `suspended`, `archived`,
/// `isAdmin`, `organizations[0].department/title`, `relations[manager]` (the manager's email),
/// `externalIds[organization]`, `orgUnitPath`, `aliases`, `creationTime`. Graph:
/// `userPrincipalName` = `mail` = primary_email, `displayName` = "given family",
/// `accountEnabled` = !suspended, `department`, `jobTitle`, `employeeId`, `createdDateTime`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeUser {
    pub id: String,
    pub primary_email: String,
    pub given_name: String,
    pub family_name: String,
    pub suspended: bool,
    /// Google only (Graph has no such state).
    pub archived: bool,
    pub is_admin: bool,
    pub department: Option<String>,
    pub title: Option<String>,
    /// The manager's user id.
    pub manager: Option<String>,
    pub employee_id: Option<String>,
    pub org_unit_path: String,
    pub aliases: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
}

impl FakeUser {
    /// A plain active user in the root org unit, created 2024-01-01.
    pub fn new(id: &str, primary_email: &str, given_name: &str, family_name: &str) -> FakeUser {
        FakeUser {
            id: id.into(),
            primary_email: primary_email.into(),
            given_name: given_name.into(),
            family_name: family_name.into(),
            suspended: false,
            archived: false,
            is_admin: false,
            department: None,
            title: None,
            manager: None,
            employee_id: None,
            org_unit_path: "/".into(),
            aliases: Vec::new(),
            created_at: 1_704_067_200,
        }
    }

    /// "Given Family" (Google's `name.fullName`, Graph's `displayName`).
    pub fn full_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}

/// A member of a group: a user or a nested group, by id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FakeMember {
    User(String),
    Group(String),
}

impl FakeMember {
    pub fn id(&self) -> &str {
        match self {
            FakeMember::User(id) | FakeMember::Group(id) => id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeGroup {
    pub id: String,
    pub email: String,
    pub name: String,
    pub description: String,
    /// In the order both APIs list them.
    pub members: Vec<FakeMember>,
}

impl FakeGroup {
    pub fn new(id: &str, email: &str, name: &str) -> FakeGroup {
        FakeGroup { id: id.into(), email: email.into(), name: name.into(), description: String::new(), members: Vec::new() }
    }
}

/// How a deleted object shows in a Graph delta: `@removed.reason` "changed" (soft-deleted,
/// restorable: what deleting a user or group does) or "deleted" (permanently gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    SoftDeleted,
    Deleted,
}

impl Removal {
    fn reason(self) -> &'static str {
        match self {
            Removal::SoftDeleted => "changed",
            Removal::Deleted => "deleted",
        }
    }
}

/// The shared directory both fakes serve. Clones are handles on the same state.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Mutex<DirState>>,
}

struct UserRec {
    user: FakeUser,
    version: u64,
    /// The user's Google JSON, made on first use and dropped on any change that shows in it.
    google_json: Option<Arc<str>>,
}

struct GroupRec {
    group: FakeGroup,
    version: u64,
    /// Membership changes, in version order (not those of [`Directory::generate`]).
    member_log: Vec<MemberChange>,
}

struct MemberChange {
    version: u64,
    member: FakeMember,
    added: bool,
}

struct DirState {
    domain: String,
    customer_id: String,
    version: u64,
    users: BTreeMap<String, UserRec>,
    /// Lowercased primary email → id.
    users_by_email: BTreeMap<String, String>,
    /// (version of the latest change, id): one entry per changed or removed user.
    user_changes: BTreeSet<(u64, String)>,
    removed_users: HashMap<String, (u64, Removal)>,
    groups: BTreeMap<String, GroupRec>,
    groups_by_email: BTreeMap<String, String>,
    group_changes: BTreeSet<(u64, String)>,
    removed_groups: HashMap<String, (u64, Removal)>,
}

impl DirState {
    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn touch_user(&mut self, id: &str, old: u64, v: u64) {
        if old > 0 {
            self.user_changes.remove(&(old, id.to_owned()));
        }
        self.user_changes.insert((v, id.to_owned()));
    }

    fn touch_group(&mut self, id: &str, v: u64) {
        let old = self.groups.get(id).map(|g| g.version).unwrap_or(0);
        if old > 0 {
            self.group_changes.remove(&(old, id.to_owned()));
        }
        self.group_changes.insert((v, id.to_owned()));
        if let Some(g) = self.groups.get_mut(id) {
            g.version = v;
        }
    }

    fn member_exists(&self, m: &FakeMember) -> bool {
        match m {
            FakeMember::User(id) => self.users.contains_key(id),
            FakeMember::Group(id) => self.groups.contains_key(id),
        }
    }

    /// Takes `member` out of every group that has it (its user or group is being deleted).
    fn remove_member_everywhere(&mut self, member: &FakeMember, v: u64) {
        let holding: Vec<String> = self.groups.iter().filter(|(_, g)| g.group.members.contains(member)).map(|(id, _)| id.clone()).collect();
        for gid in holding {
            let g = self.groups.get_mut(&gid).unwrap();
            g.group.members.retain(|m| m != member);
            g.member_log.push(MemberChange { version: v, member: member.clone(), added: false });
            self.touch_group(&gid, v);
        }
    }

    fn user_email(&self, id: &str) -> Option<&str> {
        self.users.get(id).map(|u| u.user.primary_email.as_str())
    }

    fn find_user(&self, key: &str) -> Option<&UserRec> {
        if let Some(u) = self.users.get(key) {
            return Some(u);
        }
        let lower = key.to_ascii_lowercase();
        if let Some(id) = self.users_by_email.get(&lower) {
            return self.users.get(id);
        }
        self.users.values().find(|u| u.user.aliases.iter().any(|a| a.eq_ignore_ascii_case(key)))
    }

    fn find_group(&self, key: &str) -> Option<&GroupRec> {
        self.groups.get(key).or_else(|| self.groups_by_email.get(&key.to_ascii_lowercase()).and_then(|id| self.groups.get(id)))
    }
}

const GIVEN: &[&str] = &[
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Barbara",
    "Dennis",
    "Margaret",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Donald",
    "Hedy",
    "John",
    "Katherine",
    "Tim",
    "Shafi",
    "Leslie",
    "Sophie",
    "Niklaus",
    "Mary",
    "Bjarne",
    "Anita",
    "Guido",
    "Karen",
    "Vint",
    "Joan",
    "Whitfield",
    "Lynn",
    "Yukihiro",
    "Adele",
    "Brian",
];
const FAMILY: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Liskov",
    "Ritchie",
    "Hamilton",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Knuth",
    "Lamarr",
    "McCarthy",
    "Johnson",
    "Berners-Lee",
    "Goldwasser",
    "Lamport",
    "Wilson",
    "Wirth",
    "Keller",
    "Stroustrup",
    "Borg",
    "van Rossum",
    "Jones",
    "Cerf",
    "Clarke",
    "Diffie",
    "Conway",
    "Matsumoto",
    "Goldberg",
    "Kernighan",
];
const DEPARTMENTS: &[&str] = &["Engineering", "Sales", "Marketing", "Finance", "Support", "Legal", "Operations", "Research"];
const TITLES: &[&str] = &["Engineer", "Senior Engineer", "Manager", "Analyst", "Director", "Specialist", "Associate"];

/// A deterministic generator (SplitMix64): the same seed gives the same directory everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A GUID-shaped id (Graph's form; Google's ids are opaque to a client too).
    fn guid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48 & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Directory {
    /// An empty directory for `domain` (the Google customer id is derived from it).
    pub fn new(domain: &str) -> Directory {
        let h = fnv(domain);
        let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut customer_id = String::from("C0");
        for i in 0..7 {
            customer_id.push(alphabet[((h >> (i * 5)) % 36) as usize] as char);
        }
        Directory {
            inner: Arc::new(Mutex::new(DirState {
                domain: domain.to_ascii_lowercase(),
                customer_id,
                version: 0,
                users: BTreeMap::new(),
                users_by_email: BTreeMap::new(),
                user_changes: BTreeSet::new(),
                removed_users: HashMap::new(),
                groups: BTreeMap::new(),
                groups_by_email: BTreeMap::new(),
                group_changes: BTreeSet::new(),
                removed_groups: HashMap::new(),
            })),
        }
    }

    /// A deterministic directory on `example.com`: `users` users (user `i` has the email
    /// `given.family.i@example.com` and, for i > 0, user `(i-1)/8` as manager; about 2 % are
    /// suspended and 0.5 % archived; user 0 is an admin), `groups` groups of `members_per_group`
    /// distinct users each (`group-<i>@example.com`), and every group `i` with `i % 4 == 1` also
    /// has group `i-1` as a nested member. Generated objects are at version 0 (no change-log
    /// entries): a delta from the start sees them in its full pass only.
    pub fn generate(users: usize, groups: usize, members_per_group: usize, seed: u64) -> Directory {
        let dir = Directory::new("example.com");
        {
            let mut st = dir.lock();
            let mut rng = Rng(seed);
            let domain = st.domain.clone();
            let mut ids: Vec<String> = Vec::with_capacity(users);
            for i in 0..users {
                let id = rng.guid();
                let given = GIVEN[rng.below(GIVEN.len())];
                let family = FAMILY[rng.below(FAMILY.len())];
                let email = format!("{}.{}.{i}@{domain}", given.to_ascii_lowercase(), family.to_ascii_lowercase().replace(' ', ""));
                let department = DEPARTMENTS[rng.below(DEPARTMENTS.len())];
                let title = TITLES[rng.below(TITLES.len())];
                let suspended = rng.below(50) == 0;
                let archived = !suspended && rng.below(200) == 0;
                let created_at = 1_514_764_800 + rng.next() % (6 * 365 * 86_400);
                let user = FakeUser {
                    id: id.clone(),
                    primary_email: email.clone(),
                    given_name: given.into(),
                    family_name: family.into(),
                    suspended,
                    archived,
                    is_admin: i == 0,
                    department: Some(department.into()),
                    title: Some(title.into()),
                    manager: if i > 0 { Some(ids[(i - 1) / 8].clone()) } else { None },
                    employee_id: Some(format!("E{:06}", i + 1)),
                    org_unit_path: format!("/{department}"),
                    aliases: Vec::new(),
                    created_at,
                };
                assert!(st.users_by_email.insert(email, id.clone()).is_none());
                assert!(st.users.insert(id.clone(), UserRec { user, version: 0, google_json: None }).is_none(), "duplicate generated id");
                ids.push(id);
            }
            let mut group_ids: Vec<String> = Vec::with_capacity(groups);
            for g in 0..groups {
                let id = rng.guid();
                let email = format!("group-{g}@{domain}");
                let mut members = Vec::new();
                let n = members_per_group.min(users);
                if n > 0 {
                    let start = rng.below(users);
                    let mut stride = 1 + rng.below(users.max(2) - 1);
                    while gcd(stride, users) != 1 {
                        stride += 1;
                    }
                    for k in 0..n {
                        members.push(FakeMember::User(ids[(start + k * stride) % users].clone()));
                    }
                }
                if g % 4 == 1 {
                    members.push(FakeMember::Group(group_ids[g - 1].clone()));
                }
                let group = FakeGroup {
                    id: id.clone(),
                    email: email.clone(),
                    name: format!("Group {g}"),
                    description: format!("Generated group number {g}"),
                    members,
                };
                st.groups_by_email.insert(email, id.clone());
                assert!(st.groups.insert(id.clone(), GroupRec { group, version: 0, member_log: Vec::new() }).is_none());
                group_ids.push(id);
            }
        }
        dir
    }

    fn lock(&self) -> MutexGuard<'_, DirState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn domain(&self) -> String {
        self.lock().domain.clone()
    }

    /// The Google customer id (`C0…`), accepted as `customer=` besides `my_customer`.
    pub fn customer_id(&self) -> String {
        self.lock().customer_id.clone()
    }

    /// The version of the latest change (0 for a generated, unchanged directory).
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    pub fn user_count(&self) -> usize {
        self.lock().users.len()
    }

    pub fn group_count(&self) -> usize {
        self.lock().groups.len()
    }

    /// All users, by id.
    pub fn users(&self) -> Vec<FakeUser> {
        self.lock().users.values().map(|u| u.user.clone()).collect()
    }

    pub fn user(&self, id: &str) -> Option<FakeUser> {
        self.lock().users.get(id).map(|u| u.user.clone())
    }

    pub fn user_by_email(&self, email: &str) -> Option<FakeUser> {
        let st = self.lock();
        st.users_by_email.get(&email.to_ascii_lowercase()).and_then(|id| st.users.get(id)).map(|u| u.user.clone())
    }

    /// All groups, by id.
    pub fn groups(&self) -> Vec<FakeGroup> {
        self.lock().groups.values().map(|g| g.group.clone()).collect()
    }

    pub fn group(&self, id: &str) -> Option<FakeGroup> {
        self.lock().groups.get(id).map(|g| g.group.clone())
    }

    /// Adds a user. Panics if the id or the email is taken (a test's own mistake). A user
    /// deleted earlier may be added again under its id.
    pub fn add_user(&self, user: FakeUser) {
        let mut st = self.lock();
        let email = user.primary_email.to_ascii_lowercase();
        assert!(!st.users.contains_key(&user.id), "user id {} exists", user.id);
        assert!(!st.users_by_email.contains_key(&email), "email {email} is taken");
        let v = st.bump();
        let old = st.removed_users.remove(&user.id).map(|(old, _)| old).unwrap_or(0);
        st.touch_user(&user.id, old, v);
        st.users_by_email.insert(email, user.id.clone());
        st.users.insert(user.id.clone(), UserRec { user, version: v, google_json: None });
    }

    /// Changes a user in place (`f` must keep the id). False if there is no such user.
    pub fn update_user(&self, id: &str, f: impl FnOnce(&mut FakeUser)) -> bool {
        let mut st = self.lock();
        let Some(rec) = st.users.get(id) else { return false };
        let mut user = rec.user.clone();
        let old_version = rec.version;
        f(&mut user);
        assert_eq!(user.id, id, "update_user must not change the id");
        let old_email = rec.user.primary_email.to_ascii_lowercase();
        let new_email = user.primary_email.to_ascii_lowercase();
        let email_changed = old_email != new_email;
        if email_changed {
            assert!(!st.users_by_email.contains_key(&new_email), "email {new_email} is taken");
            st.users_by_email.remove(&old_email);
            st.users_by_email.insert(new_email, id.to_owned());
        }
        let v = st.bump();
        st.touch_user(id, old_version, v);
        let rec = st.users.get_mut(id).unwrap();
        rec.user = user;
        rec.version = v;
        rec.google_json = None;
        if email_changed {
            // Reports show their manager's email (Google's `relations`).
            for u in st.users.values_mut().filter(|u| u.user.manager.as_deref() == Some(id)) {
                u.google_json = None;
            }
        }
        true
    }

    /// Deletes a user the way an admin does (Graph: `@removed` reason "changed", restorable):
    /// it leaves its groups and stops being anyone's manager. False if there is no such user.
    pub fn remove_user(&self, id: &str) -> bool {
        self.delete_user(id, Removal::SoftDeleted)
    }

    /// Deletes a user for good (Graph: `@removed` reason "deleted").
    pub fn purge_user(&self, id: &str) -> bool {
        self.delete_user(id, Removal::Deleted)
    }

    fn delete_user(&self, id: &str, how: Removal) -> bool {
        let mut st = self.lock();
        let Some(rec) = st.users.remove(id) else { return false };
        let v = st.bump();
        st.users_by_email.remove(&rec.user.primary_email.to_ascii_lowercase());
        st.touch_user(id, rec.version, v);
        st.removed_users.insert(id.to_owned(), (v, how));
        st.remove_member_everywhere(&FakeMember::User(id.to_owned()), v);
        let reports: Vec<(String, u64)> =
            st.users.iter().filter(|(_, u)| u.user.manager.as_deref() == Some(id)).map(|(uid, u)| (uid.clone(), u.version)).collect();
        for (uid, old) in reports {
            st.touch_user(&uid, old, v);
            let u = st.users.get_mut(&uid).unwrap();
            u.user.manager = None;
            u.version = v;
            u.google_json = None;
        }
        true
    }

    /// Adds a group; its members must exist. Panics if the id or email is taken.
    pub fn add_group(&self, group: FakeGroup) {
        let mut st = self.lock();
        let email = group.email.to_ascii_lowercase();
        assert!(!st.groups.contains_key(&group.id), "group id {} exists", group.id);
        assert!(!st.groups_by_email.contains_key(&email), "group email {email} is taken");
        for m in &group.members {
            assert!(st.member_exists(m), "member {m:?} does not exist");
        }
        let v = st.bump();
        if let Some((old, _)) = st.removed_groups.remove(&group.id) {
            st.group_changes.remove(&(old, group.id.clone()));
        }
        let log = group.members.iter().map(|m| MemberChange { version: v, member: m.clone(), added: true }).collect();
        st.groups_by_email.insert(email, group.id.clone());
        let id = group.id.clone();
        st.groups.insert(id.clone(), GroupRec { group, version: 0, member_log: log });
        st.touch_group(&id, v);
    }

    /// Changes a group in place (`f` must keep the id; members it adds must exist).
    pub fn update_group(&self, id: &str, f: impl FnOnce(&mut FakeGroup)) -> bool {
        let mut st = self.lock();
        let Some(rec) = st.groups.get(id) else { return false };
        let mut group = rec.group.clone();
        f(&mut group);
        assert_eq!(group.id, id, "update_group must not change the id");
        for m in &group.members {
            assert!(st.member_exists(m), "member {m:?} does not exist");
        }
        let before: HashSet<&FakeMember> = rec.group.members.iter().collect();
        let after: HashSet<&FakeMember> = group.members.iter().collect();
        let mut changes: Vec<(FakeMember, bool)> = before.difference(&after).map(|m| ((*m).clone(), false)).collect();
        changes.extend(after.difference(&before).map(|m| ((*m).clone(), true)));
        changes.sort();
        let old_email = rec.group.email.to_ascii_lowercase();
        let new_email = group.email.to_ascii_lowercase();
        if old_email != new_email {
            assert!(!st.groups_by_email.contains_key(&new_email), "group email {new_email} is taken");
            st.groups_by_email.remove(&old_email);
            st.groups_by_email.insert(new_email, id.to_owned());
        }
        let v = st.bump();
        let rec = st.groups.get_mut(id).unwrap();
        rec.group = group;
        rec.member_log.extend(changes.into_iter().map(|(member, added)| MemberChange { version: v, member, added }));
        st.touch_group(id, v);
        true
    }

    /// Adds a member at the end of the group's list. False if the group does not exist or
    /// already has it; panics if the member does not exist.
    pub fn add_member(&self, group_id: &str, member: FakeMember) -> bool {
        let mut st = self.lock();
        assert!(st.member_exists(&member), "member {member:?} does not exist");
        match st.groups.get(group_id) {
            Some(g) if !g.group.members.contains(&member) => {}
            _ => return false,
        }
        let v = st.bump();
        let g = st.groups.get_mut(group_id).unwrap();
        g.group.members.push(member.clone());
        g.member_log.push(MemberChange { version: v, member, added: true });
        st.touch_group(group_id, v);
        true
    }

    /// Takes a member out of a group. False if it was not in it.
    pub fn remove_member(&self, group_id: &str, member: &FakeMember) -> bool {
        let mut st = self.lock();
        match st.groups.get(group_id) {
            Some(g) if g.group.members.contains(member) => {}
            _ => return false,
        }
        let v = st.bump();
        let g = st.groups.get_mut(group_id).unwrap();
        g.group.members.retain(|m| m != member);
        g.member_log.push(MemberChange { version: v, member: member.clone(), added: false });
        st.touch_group(group_id, v);
        true
    }

    /// Deletes a group (Graph: reason "changed"); it leaves the groups it was nested in.
    pub fn remove_group(&self, id: &str) -> bool {
        self.delete_group(id, Removal::SoftDeleted)
    }

    /// Deletes a group for good (Graph: reason "deleted").
    pub fn purge_group(&self, id: &str) -> bool {
        self.delete_group(id, Removal::Deleted)
    }

    fn delete_group(&self, id: &str, how: Removal) -> bool {
        let mut st = self.lock();
        if !st.groups.contains_key(id) {
            return false;
        }
        let v = st.bump();
        st.touch_group(id, v);
        let rec = st.groups.remove(id).unwrap();
        st.groups_by_email.remove(&rec.group.email.to_ascii_lowercase());
        st.removed_groups.insert(id.to_owned(), (v, how));
        st.remove_member_everywhere(&FakeMember::Group(id.to_owned()), v);
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Faults and stats
// ---------------------------------------------------------------------------------------------

/// Fault switches of one server. Counters count down per data-endpoint request (the token
/// endpoint has its own, [`Faults::fail_token_requests_next`]); a request that passed
/// authentication meets them in this order: 429, 503, 500, Google's 403 quota error, cut body.
#[derive(Default)]
pub struct Faults {
    throttle: AtomicU64,
    throttle_after: AtomicU64,
    unavailable: AtomicU64,
    unavailable_after: AtomicU64,
    fail: AtomicU64,
    quota: AtomicU64,
    drop: AtomicU64,
    token_fail: AtomicU64,
    token_lifetime: AtomicU64,
    token_epoch: AtomicU64,
    delta_epoch: AtomicU64,
    latency_ms: AtomicU64,
    garble: AtomicU64,
    garble_skip: AtomicU64,
}

fn take_one(counter: &AtomicU64) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

impl Faults {
    fn new(token_lifetime: u64) -> Faults {
        let f = Faults::default();
        f.token_lifetime.store(token_lifetime, Ordering::SeqCst);
        f
    }

    /// The next `n` data requests answer 429 with `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, n: u64, retry_after_secs: u64) {
        self.throttle_after.store(retry_after_secs, Ordering::SeqCst);
        self.throttle.store(n, Ordering::SeqCst);
    }

    /// The next `n` data requests answer 503 with `Retry-After: retry_after_secs`.
    pub fn unavailable_next(&self, n: u64, retry_after_secs: u64) {
        self.unavailable_after.store(retry_after_secs, Ordering::SeqCst);
        self.unavailable.store(n, Ordering::SeqCst);
    }

    /// The next `n` data requests answer 500.
    pub fn fail_next(&self, n: u64) {
        self.fail.store(n, Ordering::SeqCst);
    }

    /// Google only: the next `n` data requests answer 403 `rateLimitExceeded`, the Admin SDK's
    /// documented quota error (no Retry-After). Graph ignores it.
    pub fn quota_exceeded_next(&self, n: u64) {
        self.quota.store(n, Ordering::SeqCst);
    }

    /// The next `n` data requests get a 200 whose body stops halfway (Content-Length promises
    /// the whole) and the connection is closed.
    pub fn drop_next(&self, n: u64) {
        self.drop.store(n, Ordering::SeqCst);
    }

    /// After `skip` more data requests, the next `n` get a 200 with well-formed JSON that is not
    /// what the API returns (ids as numbers, the list as a string): a page no connector can read.
    pub fn garble_after(&self, skip: u64, n: u64) {
        self.garble_skip.store(skip, Ordering::SeqCst);
        self.garble.store(n, Ordering::SeqCst);
    }

    /// The next `n` token requests answer 503 `temporarily_unavailable` with Retry-After: 1.
    pub fn fail_token_requests_next(&self, n: u64) {
        self.token_fail.store(n, Ordering::SeqCst);
    }

    /// The lifetime (`expires_in`) of tokens issued from now on. Defaults: Google 3600, Graph 3599.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.token_lifetime.store(secs, Ordering::SeqCst);
    }

    /// Every token issued so far is refused (401) from now on.
    pub fn expire_tokens(&self) {
        self.token_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Graph: every delta and skip token issued so far answers 410 Gone from now on.
    pub fn expire_delta_tokens(&self) {
        self.delta_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Every request (data and token) waits this long before it is answered.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms.store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Clears every pending fault counter and the latency (not expiries already made).
    pub fn clear(&self) {
        for c in [
            &self.throttle, &self.unavailable, &self.fail, &self.quota, &self.drop, &self.token_fail, &self.latency_ms,
            &self.garble, &self.garble_skip,
        ] {
            c.store(0, Ordering::SeqCst);
        }
    }
}

/// What a server has served. Endpoint names: "token", "users", "users.get", "groups",
/// "groups.get", "members", "users.delta", "groups.delta" (every request counts, refused ones too).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub tokens_issued: u64,
    /// Token requests refused (bad credentials, assertion, grant, scope).
    pub token_refusals: u64,
    /// Data requests answered 401 / 403 (scope, role or delegation).
    pub unauthorized: u64,
    pub forbidden: u64,
    /// Faults served: 429, 503, 500, Google 403 quota, cut bodies, token-endpoint 503s.
    pub throttled: u64,
    pub unavailable: u64,
    pub failed: u64,
    pub quota_exceeded: u64,
    pub dropped: u64,
    pub token_failures: u64,
    /// 410 Gone answers to delta requests.
    pub gone: u64,
    /// Every access token issued, in order.
    pub issued_tokens: Vec<String>,
    /// Every distinct bearer credential data requests presented, in first-seen order.
    pub bearer_tokens_seen: Vec<String>,
}

impl Stats {
    pub fn requests_to(&self, endpoint: &str) -> u64 {
        self.requests.get(endpoint).copied().unwrap_or(0)
    }

    /// Data requests (everything but the token endpoint).
    pub fn data_requests(&self) -> u64 {
        self.requests.iter().filter(|(k, _)| k.as_str() != "token").map(|(_, v)| v).sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared server machinery
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    Google,
    Graph,
}

struct Issued {
    expires: Instant,
    epoch: u64,
    /// Google: the delegated admin (`sub`); a token without one may not read the directory.
    subject: Option<String>,
    /// Google: the scopes; Graph: the app's roles.
    grants: Vec<String>,
}

#[derive(Default)]
struct StatsState {
    stats: Stats,
    seen: HashSet<String>,
}

struct Common {
    base_url: String,
    dir: Directory,
    faults: Faults,
    stats: Mutex<StatsState>,
    tokens: Mutex<HashMap<String, Issued>>,
}

/// A data request that may be answered; `drop` cuts its body.
struct Pass {
    drop: bool,
}

impl Common {
    fn new(base_url: String, dir: Directory, token_lifetime: u64) -> Common {
        Common {
            base_url,
            dir,
            faults: Faults::new(token_lifetime),
            stats: Mutex::new(StatsState::default()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn stats(&self) -> MutexGuard<'_, StatsState> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats().stats);
    }

    async fn latency(&self) {
        let ms = self.faults.latency_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn issue(&self, prefix: &str, subject: Option<String>, grants: Vec<String>) -> (String, u64) {
        let lifetime = self.faults.token_lifetime.load(Ordering::SeqCst);
        let token = format!("{prefix}{}", random_token());
        let issued = Issued {
            expires: Instant::now() + Duration::from_secs(lifetime),
            epoch: self.faults.token_epoch.load(Ordering::SeqCst),
            subject,
            grants,
        };
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), issued);
        self.count(|s| {
            s.tokens_issued += 1;
            s.issued_tokens.push(token.clone());
        });
        (token, lifetime)
    }

    /// Counts the request, checks the bearer token and its grants, then serves due faults.
    async fn gate(&self, flavor: Flavor, endpoint: &str, headers: &HeaderMap, allowed: &[&str]) -> Result<Pass, Response> {
        self.count(|s| *s.requests.entry(endpoint.to_owned()).or_default() += 1);
        self.latency().await;
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let bearer = auth
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty());
        if let Some(t) = bearer {
            let mut st = self.stats();
            if st.seen.insert(t.to_owned()) {
                st.stats.bearer_tokens_seen.push(t.to_owned());
            }
        }
        let verdict = match bearer {
            None => Err(AuthError::Missing),
            Some(t) => {
                let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
                match tokens.get(t) {
                    None => Err(AuthError::Invalid),
                    Some(i) if i.epoch != self.faults.token_epoch.load(Ordering::SeqCst) || Instant::now() >= i.expires => {
                        Err(AuthError::Expired)
                    }
                    Some(i) if flavor == Flavor::Google && i.subject.is_none() => Err(AuthError::NoDelegation),
                    Some(i) if !i.grants.iter().any(|g| allowed.contains(&g.as_str())) => Err(AuthError::Insufficient),
                    Some(_) => Ok(()),
                }
            }
        };
        if let Err(e) = verdict {
            let forbidden = matches!(e, AuthError::NoDelegation | AuthError::Insufficient);
            self.count(|s| if forbidden { s.forbidden += 1 } else { s.unauthorized += 1 });
            return Err(auth_error(flavor, e));
        }
        let f = &self.faults;
        if take_one(&f.throttle) {
            self.count(|s| s.throttled += 1);
            return Err(fault_error(flavor, StatusCode::TOO_MANY_REQUESTS, Some(f.throttle_after.load(Ordering::SeqCst))));
        }
        if take_one(&f.unavailable) {
            self.count(|s| s.unavailable += 1);
            return Err(fault_error(flavor, StatusCode::SERVICE_UNAVAILABLE, Some(f.unavailable_after.load(Ordering::SeqCst))));
        }
        if take_one(&f.fail) {
            self.count(|s| s.failed += 1);
            return Err(fault_error(flavor, StatusCode::INTERNAL_SERVER_ERROR, None));
        }
        if flavor == Flavor::Google && take_one(&f.quota) {
            self.count(|s| s.quota_exceeded += 1);
            return Err(google_error(
                StatusCode::FORBIDDEN,
                "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'.",
                "rateLimitExceeded",
                "PERMISSION_DENIED",
            ));
        }
        if f.garble.load(Ordering::SeqCst) > 0 && !take_one(&f.garble_skip) && take_one(&f.garble) {
            let body = match flavor {
                Flavor::Google => r#"{"kind":"admin#directory#users","users":"garbled","nextPageToken":7}"#,
                Flavor::Graph => r#"{"@odata.context":"garbled","value":{"id":7}}"#,
            };
            return Err(json_response(StatusCode::OK, "application/json; charset=UTF-8", body.to_string()));
        }
        let drop = take_one(&f.drop);
        if drop {
            self.count(|s| s.dropped += 1);
        }
        Ok(Pass { drop })
    }

    /// Token endpoint preamble: counts, waits, serves a due token-endpoint fault.
    async fn token_gate(&self) -> Result<(), Response> {
        self.count(|s| *s.requests.entry("token".into()).or_default() += 1);
        self.latency().await;
        if take_one(&self.faults.token_fail) {
            self.count(|s| s.token_failures += 1);
            let mut r = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                JSON,
                json!({"error": "temporarily_unavailable", "error_description": "The service is temporarily unavailable."}).to_string(),
            );
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(r);
        }
        Ok(())
    }

    fn refuse_token(&self, r: Response) -> Response {
        self.count(|s| s.token_refusals += 1);
        r
    }
}

enum AuthError {
    Missing,
    Invalid,
    Expired,
    NoDelegation,
    Insufficient,
}

const JSON: &str = "application/json; charset=utf-8";
const GOOGLE_JSON: &str = "application/json; charset=UTF-8";
const GRAPH_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

fn json_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A 200 whose body stops halfway: Content-Length promises all of it, then the stream fails
/// and the connection is closed.
fn cut_response(content_type: &'static str, body: String) -> Response {
    let bytes = Bytes::from(body);
    let total = bytes.len();
    let half = bytes.slice(..total / 2);
    use futures_util::StreamExt as _;
    // The half goes out with the headers (the pause lets hyper flush them); then the body fails
    // and hyper closes the connection.
    let cut = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err::<Bytes, _>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fault injection: connection dropped mid-body"))
    });
    let stream = futures_util::stream::iter([Ok::<Bytes, std::io::Error>(half)]).chain(cut);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    r
}

fn ok_body(flavor: Flavor, pass: &Pass, body: String) -> Response {
    let ct = if flavor == Flavor::Google { GOOGLE_JSON } else { GRAPH_JSON };
    if pass.drop { cut_response(ct, body) } else { json_response(StatusCode::OK, ct, body) }
}

fn google_error(status: StatusCode, message: &str, reason: &str, status_name: &str) -> Response {
    let body = json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status_name,
        }
    });
    json_response(status, GOOGLE_JSON, body.to_string())
}

fn google_bad_request(message: &str) -> Response {
    google_error(StatusCode::BAD_REQUEST, message, "invalid", "INVALID_ARGUMENT")
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    graph_error_inner(status, code, message, None)
}

fn graph_error_inner(status: StatusCode, code: &str, message: &str, inner_code: Option<&str>) -> Response {
    let request_id = random_guid();
    let mut inner = json!({"date": rfc3339(now_unix(), false), "request-id": request_id, "client-request-id": request_id});
    if let Some(c) = inner_code {
        inner["code"] = json!(c);
    }
    let body = json!({"error": {"code": code, "message": message, "innerError": inner}});
    let mut r = json_response(status, "application/json", body.to_string());
    r.headers_mut().insert("request-id", HeaderValue::from_str(&request_id).unwrap());
    r
}

fn auth_error(flavor: Flavor, e: AuthError) -> Response {
    match flavor {
        Flavor::Google => {
            let mut r = match e {
                AuthError::Missing => google_error(
                    StatusCode::UNAUTHORIZED,
                    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                    "required",
                    "UNAUTHENTICATED",
                ),
                AuthError::Invalid | AuthError::Expired => google_error(
                    StatusCode::UNAUTHORIZED,
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                    "authError",
                    "UNAUTHENTICATED",
                ),
                AuthError::NoDelegation => {
                    google_error(StatusCode::FORBIDDEN, "Not Authorized to access this resource/api", "forbidden", "PERMISSION_DENIED")
                }
                AuthError::Insufficient => google_error(
                    StatusCode::FORBIDDEN,
                    "Request had insufficient authentication scopes.",
                    "insufficientPermissions",
                    "PERMISSION_DENIED",
                ),
            };
            if r.status() == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\""),
                );
            }
            r
        }
        Flavor::Graph => {
            let mut r = match e {
                AuthError::Missing => graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "Access token is empty."),
                AuthError::Invalid => graph_error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "IDX14100: JWT is not well formed, there are no dots (.).",
                ),
                AuthError::Expired => {
                    graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
                }
                AuthError::NoDelegation | AuthError::Insufficient => {
                    graph_error(StatusCode::FORBIDDEN, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
                }
            };
            if r.status() == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                    ),
                );
            }
            r
        }
    }
}

fn fault_error(flavor: Flavor, status: StatusCode, retry_after: Option<u64>) -> Response {
    let mut r = match (flavor, status) {
        (Flavor::Google, StatusCode::TOO_MANY_REQUESTS) => google_error(
            status,
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'admin.googleapis.com'.",
            "rateLimitExceeded",
            "RESOURCE_EXHAUSTED",
        ),
        (Flavor::Google, StatusCode::SERVICE_UNAVAILABLE) => {
            google_error(status, "The service is currently unavailable.", "backendError", "UNAVAILABLE")
        }
        (Flavor::Google, _) => google_error(status, "Internal error encountered.", "backendError", "INTERNAL"),
        (Flavor::Graph, StatusCode::TOO_MANY_REQUESTS) => graph_error(
            status,
            "TooManyRequests",
            "Too many requests. The application is being throttled; retry after the interval in the Retry-After header.",
        ),
        (Flavor::Graph, StatusCode::SERVICE_UNAVAILABLE) => graph_error(
            status,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Retry after the interval in the Retry-After header.",
        ),
        (Flavor::Graph, _) => graph_error(status, "generalException", "An unspecified error has occurred."),
    };
    if let Some(secs) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    B64URL.encode(bytes)
}

fn random_guid() -> String {
    let mut rng = Rng(rand::random());
    rng.guid()
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `2024-05-01T10:11:12Z`, or with `.000` milliseconds as Google writes times.
fn rfc3339(unix: u64, millis: bool) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    let frac = if millis { ".000" } else { "" };
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{frac}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

fn parse_query(q: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Graph's system query options: `$top` or `top`, any case.
fn odata_param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k.trim_start_matches('$').eq_ignore_ascii_case(name.trim_start_matches('$'))).map(|(_, v)| v.as_str())
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn encode_token(parts: &[&str]) -> String {
    B64URL.encode(parts.join("\n"))
}

fn decode_token(token: &str) -> Option<Vec<String>> {
    let bytes = B64URL.decode(token.trim_end_matches('=')).ok()?;
    Some(String::from_utf8(bytes).ok()?.split('\n').map(str::to_owned).collect())
}

/// A tiny JSON writer: pages of hundreds of objects are written straight into one string. (This
/// crate builds unoptimized in tests: strings that need no escaping, nearly all, are copied whole.)
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether any byte is a control character, '"' or '\\': eight bytes at a time (SWAR), which
/// matters in an unoptimized build.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0;
        if below_space || has_zero(x ^ (ONES * b'"' as u64)) || has_zero(x ^ (ONES * b'\\' as u64)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        // Keys are this file's own constants: nothing to escape.
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
        self.out
    }

    fn str(&mut self, k: &str, v: &str) {
        let out = self.key(k);
        push_json_str(out, v);
    }

    fn opt_str(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(k, v),
            None => self.raw(k, "null"),
        }
    }

    fn bool(&mut self, k: &str, v: bool) {
        self.raw(k, if v { "true" } else { "false" });
    }

    fn raw(&mut self, k: &str, raw: &str) {
        self.key(k).push_str(raw);
    }

    fn end(self) {
        self.out.push('}');
    }
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// An etag as Google writes them: a quoted string (the quotes are part of the value).
fn etag(id: &str, version: u64) -> String {
    format!("\"{:016x}/{version}\"", fnv(id))
}

/// A string's JSON-escaped contents (no quotes), for `write!`.
struct Esc<'a>(&'a str);

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !needs_escape(self.0.as_bytes()) {
            return f.write_str(self.0);
        }
        let mut quoted = String::with_capacity(self.0.len() + 8);
        push_json_str(&mut quoted, self.0);
        f.write_str(&quoted[1..quoted.len() - 1])
    }
}

/// [`rfc3339`] for `write!`.
struct Time(u64, bool);

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&rfc3339(self.0, self.1))
    }
}

fn page_size(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ()> {
    match raw {
        None | Some("") => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(()),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Google
// ---------------------------------------------------------------------------------------------

/// A service account with domain-wide delegation: the RSA key, the delegated admin (`subject`)
/// and the scopes the delegation grants.
#[derive(Clone)]
pub struct GoogleCreds {
    pub client_email: String,
    /// The delegated admin an assertion's `sub` must name.
    pub subject: String,
    /// The scopes domain-wide delegation grants this client.
    pub scopes: Vec<String>,
    pub project_id: String,
    /// Numeric, 21 digits.
    pub client_id: String,
    /// 40 hex digits; the `kid` of a signed assertion.
    pub private_key_id: String,
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as in the JSON key file.
    pub private_key_pem: String,
    private_key_pkcs1_der: Vec<u8>,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl std::fmt::Debug for GoogleCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleCreds").field("client_email", &self.client_email).field("subject", &self.subject).finish_non_exhaustive()
    }
}

impl GoogleCreds {
    /// A fresh RSA-2048 service-account key. `client_email` should look like
    /// `name@project.iam.gserviceaccount.com` (the project id is taken from it); `scopes` are the
    /// scopes domain-wide delegation grants (e.g. [`GOOGLE_SYNC_SCOPES`]).
    pub fn generate(client_email: &str, subject: &str, scopes: &[&str]) -> GoogleCreds {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::EncodePrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key generation");
        let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).expect("PKCS#8 PEM").to_string();
        let der = key.to_pkcs1_der().expect("PKCS#1 DER").as_bytes().to_vec();
        let project_id = client_email
            .split_once('@')
            .and_then(|(_, host)| host.split('.').next())
            .filter(|p| !p.is_empty())
            .unwrap_or("fake-project")
            .to_owned();
        let digits: u128 = rand::random();
        let kid: [u8; 20] = rand::random();
        GoogleCreds {
            client_email: client_email.into(),
            subject: subject.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            project_id,
            client_id: format!("1{:020}", digits % 100_000_000_000_000_000_000),
            private_key_id: kid.iter().map(|b| format!("{b:02x}")).collect(),
            private_key_pem: pem,
            private_key_pkcs1_der: der,
            modulus: key.n().to_bytes_be(),
            exponent: key.e().to_bytes_be(),
        }
    }

    /// The private key as PKCS#1 DER (what `jsonwebtoken::EncodingKey::from_rsa_der` takes).
    pub fn private_key_pkcs1_der(&self) -> &[u8] {
        &self.private_key_pkcs1_der
    }

    /// The JSON key file Google hands out for this service account, `token_uri` as given.
    pub fn key_file_json(&self, token_uri: &str) -> String {
        let body = json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem,
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", enc(&self.client_email)),
            "universe_domain": "googleapis.com",
        });
        serde_json::to_string_pretty(&body).unwrap() + "\n"
    }

    /// A signed assertion for `token_uri` (`iat` now, `exp` in an hour, `kid` set, `sub` =
    /// `subject`): a convenience for benchmarks; a connector makes its own.
    pub fn sign_assertion(&self, token_uri: &str, scopes: &[&str], subject: Option<&str>) -> String {
        let now = now_unix();
        let mut claims = json!({"iss": self.client_email, "aud": token_uri, "scope": scopes.join(" "), "iat": now, "exp": now + 3600});
        if let Some(sub) = subject {
            claims["sub"] = json!(sub);
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.private_key_id.clone());
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_der(&self.private_key_pkcs1_der))
            .expect("sign assertion")
    }
}

struct GoogleServer {
    common: Common,
    creds: GoogleCreds,
    token_url: String,
}

/// The fake Google Admin SDK Directory API and token endpoint. Stops when dropped.
pub struct GoogleApi {
    /// `http://127.0.0.1:PORT`, standing for `https://admin.googleapis.com`.
    pub base_url: String,
    /// `{base_url}/token`, standing for `https://oauth2.googleapis.com/token`.
    pub token_url: String,
    server: Arc<GoogleServer>,
    task: tokio::task::JoinHandle<()>,
}

impl GoogleApi {
    pub async fn start(dir: Directory, creds: GoogleCreds) -> GoogleApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let token_url = format!("{base_url}/token");
        let server = Arc::new(GoogleServer { common: Common::new(base_url.clone(), dir, 3600), creds, token_url: token_url.clone() });
        let app = Router::new()
            .route("/token", post(google_token))
            .route("/admin/directory/v1/users", get(google_users))
            .route("/admin/directory/v1/users/{key}", get(google_user))
            .route("/admin/directory/v1/groups", get(google_groups))
            .route("/admin/directory/v1/groups/{key}", get(google_group))
            .route("/admin/directory/v1/groups/{key}/members", get(google_members))
            .with_state(server.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener.tap_io(|tcp| drop(tcp.set_nodelay(true))), app).await;
        });
        GoogleApi { base_url, token_url, server, task }
    }

    pub fn faults(&self) -> &Faults {
        &self.server.common.faults
    }

    pub fn stats(&self) -> Stats {
        self.server.common.stats().stats.clone()
    }

    pub fn directory(&self) -> &Directory {
        &self.server.common.dir
    }

    pub fn creds(&self) -> &GoogleCreds {
        &self.server.creds
    }

    /// The service account's JSON key file, `token_uri` = this server's token URL.
    pub fn key_file(&self) -> String {
        self.server.creds.key_file_json(&self.token_url)
    }

    /// `{base_url}/admin/directory/v1`.
    pub fn directory_url(&self) -> String {
        format!("{}/admin/directory/v1", self.base_url)
    }
}

impl Drop for GoogleApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(status, JSON, json!({"error": error, "error_description": description}).to_string())
}

fn form_of(headers: &HeaderMap, body: &Bytes) -> Option<Vec<(String, String)>> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return None;
    }
    Some(url::form_urlencoded::parse(body).into_owned().collect())
}

const GOOGLE_TIMEFRAME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";

async fn google_token(State(s): State<Arc<GoogleServer>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = s.common.token_gate().await {
        return r;
    }
    match google_grant(&s, &headers, &body) {
        Ok((subject, scopes)) => {
            let (token, lifetime) = s.common.issue("ya29.c.", subject, scopes);
            json_response(StatusCode::OK, JSON, json!({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}).to_string())
        }
        Err(r) => s.common.refuse_token(r),
    }
}

fn google_grant(s: &GoogleServer, headers: &HeaderMap, body: &Bytes) -> Result<(Option<String>, Vec<String>), Response> {
    let bad = |e: &str, d: &str| oauth_error(StatusCode::BAD_REQUEST, e, d);
    let invalid_grant = |d: &str| bad("invalid_grant", d);
    let form = form_of(headers, body).ok_or_else(|| bad("invalid_request", "Invalid request: the body must be form-encoded."))?;
    let grant = param(&form, "grant_type").unwrap_or("");
    if grant.is_empty() {
        return Err(bad("invalid_request", "Missing required parameter: grant_type"));
    }
    if grant != JWT_BEARER_GRANT {
        return Err(bad("unsupported_grant_type", &format!("Invalid grant_type: {grant}")));
    }
    let assertion = param(&form, "assertion")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("invalid_request", "Missing required parameter: assertion"))?;
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return Err(invalid_grant("Invalid JWT: the assertion is not a signed JWT."));
    }
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| invalid_grant("Invalid JWT: the header does not decode."))?;
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return Err(invalid_grant("Invalid JWT Signature."));
    }
    let claims: Value = B64URL
        .decode(parts[1])
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid_grant("Invalid JWT: the claim set does not decode."))?;
    let creds = &s.creds;
    if claims["iss"].as_str() != Some(creds.client_email.as_str()) {
        return Err(invalid_grant("Invalid grant: account not found"));
    }
    if header.kid.as_deref().is_some_and(|kid| kid != creds.private_key_id) {
        return Err(invalid_grant("Invalid JWT Signature."));
    }
    let key = jsonwebtoken::DecodingKey::from_rsa_raw_components(&creds.modulus, &creds.exponent);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(assertion, &key, &validation).map_err(|_| invalid_grant("Invalid JWT Signature."))?;
    if claims["aud"].as_str() != Some(s.token_url.as_str()) {
        return Err(invalid_grant(&format!("Invalid JWT: Failed audience check. The right audience is {}", s.token_url)));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err(invalid_grant(GOOGLE_TIMEFRAME));
    };
    let now = now_unix();
    const SKEW: u64 = 60;
    if exp <= iat || exp - iat > 3600 || iat > now + SKEW || exp + SKEW < now {
        return Err(invalid_grant(GOOGLE_TIMEFRAME));
    }
    let scopes: Vec<String> = claims["scope"].as_str().unwrap_or("").split_whitespace().map(str::to_owned).collect();
    if scopes.is_empty() {
        return Err(bad("invalid_scope", "Invalid OAuth scope or ID token audience provided."));
    }
    let subject = match claims.get("sub") {
        None | Some(Value::Null) => None,
        Some(sub) => {
            if sub.as_str() != Some(creds.subject.as_str()) {
                return Err(invalid_grant("Invalid email or User ID"));
            }
            if !scopes.iter().all(|sc| creds.scopes.contains(sc)) {
                return Err(oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized_client",
                    "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
                ));
            }
            Some(creds.subject.clone())
        }
    };
    Ok((subject, scopes))
}

/// `customer=my_customer|<customer id>` or `domain=<the domain>`.
fn google_customer(st: &DirState, q: &[(String, String)]) -> Result<(), Response> {
    match (param(q, "customer"), param(q, "domain")) {
        (Some(c), _) if c == "my_customer" || c == st.customer_id => Ok(()),
        (None, Some(d)) if d.eq_ignore_ascii_case(&st.domain) => Ok(()),
        (None, None) | (Some(""), _) => Err(google_error(StatusCode::BAD_REQUEST, "Bad Request", "badRequest", "INVALID_ARGUMENT")),
        _ => Err(google_error(StatusCode::FORBIDDEN, "Not Authorized to access this resource/api", "forbidden", "PERMISSION_DENIED")),
    }
}

fn google_range_message(name: &str, raw: &str, max: usize) -> String {
    format!("Invalid value '{raw}' for {name}. Values must be within the range: [1, {max}]")
}

const USER_SCOPES: [&str; 2] = [SCOPE_USER_READONLY, SCOPE_USER];
const GROUP_SCOPES: [&str; 2] = [SCOPE_GROUP_READONLY, SCOPE_GROUP];
const MEMBER_SCOPES: [&str; 4] = [SCOPE_GROUP_MEMBER_READONLY, SCOPE_GROUP_MEMBER, SCOPE_GROUP_READONLY, SCOPE_GROUP];

fn google_user_json(out: &mut String, st: &DirState, rec: &UserRec) {
    // A few `write!`s rather than a field at a time: core::fmt is optimized even when this crate
    // is not, and a 100,000-user pass makes 93 MB of this.
    let u = &rec.user;
    let _ = write!(
        out,
        "{{\"kind\":\"admin#directory#user\",\"id\":\"{}\",\"etag\":\"\\\"{:016x}/{}\\\"\",\"primaryEmail\":\"{}\",\
         \"name\":{{\"givenName\":\"{}\",\"familyName\":\"{}\",\"fullName\":\"{} {}\"}},\"isAdmin\":{},\
         \"isDelegatedAdmin\":false,\"lastLoginTime\":\"1970-01-01T00:00:00.000Z\",\"creationTime\":\"{}\",\
         \"agreedToTerms\":true,\"suspended\":{},",
        Esc(&u.id),
        fnv(&u.id),
        rec.version,
        Esc(&u.primary_email),
        Esc(&u.given_name),
        Esc(&u.family_name),
        Esc(&u.given_name),
        Esc(&u.family_name),
        u.is_admin,
        Time(u.created_at, true),
        u.suspended,
    );
    if u.suspended {
        out.push_str("\"suspensionReason\":\"ADMIN\",");
    }
    let _ = write!(
        out,
        "\"archived\":{},\"changePasswordAtNextLogin\":false,\"ipWhitelisted\":false,\
         \"emails\":[{{\"address\":\"{}\",\"primary\":true}}",
        u.archived,
        Esc(&u.primary_email)
    );
    for a in &u.aliases {
        let _ = write!(out, ",{{\"address\":\"{}\"}}", Esc(a));
    }
    out.push(']');
    if let Some(manager) = u.manager.as_deref().and_then(|m| st.user_email(m)) {
        let _ = write!(out, ",\"relations\":[{{\"value\":\"{}\",\"type\":\"manager\"}}]", Esc(manager));
    }
    if let Some(eid) = &u.employee_id {
        let _ = write!(out, ",\"externalIds\":[{{\"value\":\"{}\",\"type\":\"organization\"}}]", Esc(eid));
    }
    if u.department.is_some() || u.title.is_some() {
        out.push_str(",\"organizations\":[{");
        if let Some(t) = &u.title {
            let _ = write!(out, "\"title\":\"{}\",", Esc(t));
        }
        out.push_str("\"primary\":true,\"customType\":\"\"");
        if let Some(d) = &u.department {
            let _ = write!(out, ",\"department\":\"{}\"", Esc(d));
        }
        out.push_str("}]");
    }
    if !u.aliases.is_empty() {
        out.push_str(",\"aliases\":[");
        for (i, a) in u.aliases.iter().enumerate() {
            let _ = write!(out, "{}\"{}\"", if i > 0 { "," } else { "" }, Esc(a));
        }
        out.push(']');
    }
    let _ = write!(
        out,
        ",\"customerId\":\"{}\",\"orgUnitPath\":\"{}\",\"isMailboxSetup\":true,\"isEnrolledIn2Sv\":false,\
         \"isEnforcedIn2Sv\":false,\"includeInGlobalAddressList\":true}}",
        Esc(&st.customer_id),
        Esc(&u.org_unit_path)
    );
}

fn google_group_json(out: &mut String, rec: &GroupRec) {
    let g = &rec.group;
    let mut o = Obj::new(out);
    o.str("kind", "admin#directory#group");
    o.str("id", &g.id);
    o.str("etag", &etag(&g.id, rec.version));
    o.str("email", &g.email);
    o.str("name", &g.name);
    o.str("directMembersCount", &g.members.len().to_string());
    o.str("description", &g.description);
    o.bool("adminCreated", true);
    o.end();
}

fn google_member_json(out: &mut String, st: &DirState, m: &FakeMember) {
    let mut o = Obj::new(out);
    o.str("kind", "admin#directory#member");
    match m {
        FakeMember::User(id) => {
            let u = st.users.get(id);
            o.str("etag", &etag(id, u.map(|u| u.version).unwrap_or(0)));
            o.str("id", id);
            o.str("email", u.map(|u| u.user.primary_email.as_str()).unwrap_or(""));
            o.str("role", "MEMBER");
            o.str("type", "USER");
            o.str("status", if u.is_some_and(|u| u.user.suspended) { "SUSPENDED" } else { "ACTIVE" });
        }
        FakeMember::Group(id) => {
            let g = st.groups.get(id);
            o.str("etag", &etag(id, g.map(|g| g.version).unwrap_or(0)));
            o.str("id", id);
            o.str("email", g.map(|g| g.group.email.as_str()).unwrap_or(""));
            o.str("role", "MEMBER");
            o.str("type", "GROUP");
            o.str("status", "ACTIVE");
        }
    }
    o.end();
}

/// `{"kind":…,"etag":…,"<field>":[…],"nextPageToken":…}`, the array left out when empty.
fn google_list<S: AsRef<str>>(kind: &str, field: &str, version: u64, items: &[S], next: Option<String>) -> String {
    let mut out = String::with_capacity(items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>() + 200);
    let mut o = Obj::new(&mut out);
    o.str("kind", kind);
    o.str("etag", &etag(kind, version));
    if !items.is_empty() {
        let out = o.key(field);
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(item.as_ref());
        }
        out.push(']');
    }
    if let Some(n) = next {
        o.str("nextPageToken", &n);
    }
    o.end();
    out
}

fn unsupported_google(q: &[(String, String)], names: &[&str]) -> Option<Response> {
    for n in names {
        if let Some(v) = param(q, n).filter(|v| !v.is_empty() && *v != "false") {
            return Some(google_bad_request(&format!("{n}={v} is not supported by the fake Directory API")));
        }
    }
    None
}

async fn google_users(State(s): State<Arc<GoogleServer>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let pass = match s.common.gate(Flavor::Google, "users", &headers, &USER_SCOPES).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = parse_query(q);
    if let Some(r) = unsupported_google(&q, &["query", "showDeleted", "customFieldMask", "event"]) {
        return r;
    }
    let mut st = s.common.dir.lock();
    if let Err(r) = google_customer(&st, &q) {
        return r;
    }
    let raw_max = param(&q, "maxResults");
    let Ok(max) = page_size(raw_max, 100, 500) else {
        return google_bad_request(&google_range_message("maxResults", raw_max.unwrap_or(""), 500));
    };
    match param(&q, "orderBy") {
        None | Some("") | Some("email") => {}
        Some(other) => return google_bad_request(&format!("orderBy={other} is not supported by the fake Directory API (only email)")),
    }
    let descending = match param(&q, "sortOrder").map(|v| v.to_ascii_uppercase()) {
        None => false,
        Some(v) if v == "ASCENDING" || v.is_empty() => false,
        Some(v) if v == "DESCENDING" => true,
        Some(_) => return google_bad_request("Invalid value for sortOrder"),
    };
    match param(&q, "projection") {
        None | Some("basic") | Some("full") | Some("custom") | Some("BASIC") | Some("FULL") | Some("CUSTOM") => {}
        Some(_) => return google_bad_request("Invalid value for projection"),
    }
    let mode = if descending { "D" } else { "A" };
    let after = match param(&q, "pageToken").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => match decode_token(t) {
            Some(p) if p.len() == 3 && p[0] == "users" && p[1] == mode => Some(p[2].clone()),
            _ => return google_bad_request("Invalid Input: pageToken"),
        },
    };
    let page: Vec<(String, String)> = {
        let ids: Box<dyn Iterator<Item = (&String, &String)>> = match (&after, descending) {
            (None, false) => Box::new(st.users_by_email.iter()),
            (Some(a), false) => Box::new(st.users_by_email.range::<String, _>((Excluded(a), Unbounded))),
            (None, true) => Box::new(st.users_by_email.iter().rev()),
            (Some(a), true) => Box::new(st.users_by_email.range::<String, _>((Unbounded, Excluded(a))).rev()),
        };
        ids.take(max + 1).map(|(e, id)| (e.clone(), id.clone())).collect()
    };
    let next = (page.len() > max).then(|| encode_token(&["users", mode, &page[max - 1].0]));
    let mut items: Vec<Arc<str>> = Vec::with_capacity(max);
    for (_, id) in page.iter().take(max) {
        let rec = &st.users[id];
        let json = match &rec.google_json {
            Some(j) => j.clone(),
            None => {
                let mut out = String::with_capacity(1000);
                google_user_json(&mut out, &st, rec);
                let j: Arc<str> = out.into();
                st.users.get_mut(id).unwrap().google_json = Some(j.clone());
                j
            }
        };
        items.push(json);
    }
    let body = google_list("admin#directory#users", "users", st.version, &items, next);
    drop(st);
    ok_body(Flavor::Google, &pass, body)
}

async fn google_user(State(s): State<Arc<GoogleServer>>, headers: HeaderMap, Path(key): Path<String>) -> Response {
    let pass = match s.common.gate(Flavor::Google, "users.get", &headers, &USER_SCOPES).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let st = s.common.dir.lock();
    let Some(rec) = st.find_user(&key) else {
        return google_error(StatusCode::NOT_FOUND, "Resource Not Found: userKey", "notFound", "NOT_FOUND");
    };
    let mut out = String::new();
    google_user_json(&mut out, &st, rec);
    drop(st);
    ok_body(Flavor::Google, &pass, out)
}

async fn google_groups(State(s): State<Arc<GoogleServer>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let pass = match s.common.gate(Flavor::Google, "groups", &headers, &GROUP_SCOPES).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = parse_query(q);
    if let Some(r) = unsupported_google(&q, &["query", "userKey"]) {
        return r;
    }
    let st = s.common.dir.lock();
    if let Err(r) = google_customer(&st, &q) {
        return r;
    }
    let raw_max = param(&q, "maxResults");
    let Ok(max) = page_size(raw_max, 200, 200) else {
        return google_bad_request(&google_range_message("maxResults", raw_max.unwrap_or(""), 200));
    };
    match param(&q, "orderBy") {
        None | Some("") | Some("email") => {}
        Some(other) => return google_bad_request(&format!("orderBy={other} is not supported by the fake Directory API")),
    }
    if param(&q, "sortOrder").is_some_and(|v| v.eq_ignore_ascii_case("DESCENDING")) {
        return google_bad_request("sortOrder=DESCENDING is not supported by the fake Directory API for groups");
    }
    let after = match param(&q, "pageToken").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => match decode_token(t) {
            Some(p) if p.len() == 2 && p[0] == "groups" => Some(p[1].clone()),
            _ => return google_bad_request("Invalid Input: pageToken"),
        },
    };
    let page: Vec<(&String, &String)> = match &after {
        None => st.groups_by_email.iter().take(max + 1).collect(),
        Some(a) => st.groups_by_email.range::<String, _>((Excluded(a), Unbounded)).take(max + 1).collect(),
    };
    let next = (page.len() > max).then(|| encode_token(&["groups", page[max - 1].0]));
    let items: Vec<String> = page
        .iter()
        .take(max)
        .map(|(_, id)| {
            let mut out = String::new();
            google_group_json(&mut out, &st.groups[*id]);
            out
        })
        .collect();
    let body = google_list("admin#directory#groups", "groups", st.version, &items, next);
    drop(st);
    ok_body(Flavor::Google, &pass, body)
}

async fn google_group(State(s): State<Arc<GoogleServer>>, headers: HeaderMap, Path(key): Path<String>) -> Response {
    let pass = match s.common.gate(Flavor::Google, "groups.get", &headers, &GROUP_SCOPES).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let st = s.common.dir.lock();
    let Some(rec) = st.find_group(&key) else {
        return google_error(StatusCode::NOT_FOUND, "Resource Not Found: groupKey", "notFound", "NOT_FOUND");
    };
    let mut out = String::new();
    google_group_json(&mut out, rec);
    drop(st);
    ok_body(Flavor::Google, &pass, out)
}

async fn google_members(
    State(s): State<Arc<GoogleServer>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let pass = match s.common.gate(Flavor::Google, "members", &headers, &MEMBER_SCOPES).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = parse_query(q);
    if let Some(r) = unsupported_google(&q, &["includeDerivedMembership"]) {
        return r;
    }
    let st = s.common.dir.lock();
    let Some(rec) = st.find_group(&key) else {
        return google_error(StatusCode::NOT_FOUND, "Resource Not Found: groupKey", "notFound", "NOT_FOUND");
    };
    let raw_max = param(&q, "maxResults");
    let Ok(max) = page_size(raw_max, 200, 200) else {
        return google_bad_request(&google_range_message("maxResults", raw_max.unwrap_or(""), 200));
    };
    // Every member of a fake group has the role MEMBER.
    let wants_members = param(&q, "roles").is_none_or(|r| r.split(',').any(|r| r.trim().eq_ignore_ascii_case("MEMBER")));
    let offset = match param(&q, "pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => match decode_token(t) {
            Some(p) if p.len() == 3 && p[0] == "members" && p[1] == rec.group.id => match p[2].parse::<usize>() {
                Ok(n) => n,
                Err(_) => return google_bad_request("Invalid Input: pageToken"),
            },
            _ => return google_bad_request("Invalid Input: pageToken"),
        },
    };
    let members: &[FakeMember] = if wants_members { &rec.group.members } else { &[] };
    let start = offset.min(members.len());
    let end = (start + max).min(members.len());
    let next = (end < members.len()).then(|| encode_token(&["members", &rec.group.id, &end.to_string()]));
    let items: Vec<String> = members[start..end]
        .iter()
        .map(|m| {
            let mut out = String::new();
            google_member_json(&mut out, &st, m);
            out
        })
        .collect();
    let body = google_list("admin#directory#members", "members", rec.version, &items, next);
    drop(st);
    ok_body(Flavor::Google, &pass, body)
}

// ---------------------------------------------------------------------------------------------
// Microsoft Graph
// ---------------------------------------------------------------------------------------------

/// An app registration with a client secret in one tenant, and the application permissions
/// (app roles) an admin consented to.
#[derive(Clone, Debug)]
pub struct GraphCreds {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// Default: `User.Read.All`, `GroupMember.Read.All`.
    pub roles: Vec<String>,
}

impl GraphCreds {
    pub fn new(tenant_id: &str, client_id: &str, client_secret: &str) -> GraphCreds {
        GraphCreds {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            roles: vec!["User.Read.All".into(), "GroupMember.Read.All".into()],
        }
    }

    /// Deterministic GUIDs and a secret shaped like Entra's (`abc8Q~…`).
    pub fn generate(seed: u64) -> GraphCreds {
        let mut rng = Rng(seed ^ 0x6772_6170_6800);
        let tenant = rng.guid();
        let client = rng.guid();
        let secret =
            format!("fk{}8Q~{}", rng.below(10), B64URL.encode(rng.next().to_be_bytes()) + &B64URL.encode(rng.next().to_be_bytes()));
        GraphCreds::new(&tenant, &client, &secret)
    }
}

struct GraphServer {
    common: Common,
    creds: GraphCreds,
    /// `members@delta` entries per group object in a delta page; more go in further objects.
    members_per_object: AtomicU64,
}

/// The fake Microsoft Graph (v1.0) and the identity platform's token endpoint. Stops when dropped.
pub struct GraphApi {
    /// `http://127.0.0.1:PORT`, standing for both `https://graph.microsoft.com` and
    /// `https://login.microsoftonline.com`.
    pub base_url: String,
    /// `{base_url}/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    server: Arc<GraphServer>,
    task: tokio::task::JoinHandle<()>,
}

impl GraphApi {
    pub async fn start(dir: Directory, creds: GraphCreds) -> GraphApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let token_url = format!("{base_url}/{}/oauth2/v2.0/token", creds.tenant_id);
        let server = Arc::new(GraphServer {
            common: Common::new(base_url.clone(), dir, 3599),
            creds,
            members_per_object: AtomicU64::new(GRAPH_DELTA_MEMBERS_PER_OBJECT),
        });
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(graph_token))
            .route("/v1.0/users", get(graph_users))
            .route("/v1.0/users/delta", get(graph_users_delta))
            .route("/v1.0/users/microsoft.graph.delta()", get(graph_users_delta))
            .route("/v1.0/users/{id}", get(graph_user))
            .route("/v1.0/groups", get(graph_groups))
            .route("/v1.0/groups/delta", get(graph_groups_delta))
            .route("/v1.0/groups/microsoft.graph.delta()", get(graph_groups_delta))
            .route("/v1.0/groups/{id}/members", get(graph_members))
            .fallback(|| async {
                graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Resource not found for the segment (fake Graph API).")
            })
            .with_state(server.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener.tap_io(|tcp| drop(tcp.set_nodelay(true))), app).await;
        });
        GraphApi { base_url, token_url, server, task }
    }

    pub fn faults(&self) -> &Faults {
        &self.server.common.faults
    }

    pub fn stats(&self) -> Stats {
        self.server.common.stats().stats.clone()
    }

    pub fn directory(&self) -> &Directory {
        &self.server.common.dir
    }

    pub fn creds(&self) -> &GraphCreds {
        &self.server.creds
    }

    /// How many `members@delta` one group object of a delta page carries (default 500): a
    /// group with more members comes as several objects, the later ones with only `id` and
    /// `members@delta`, possibly on later pages, as Graph splits large groups.
    pub fn set_delta_members_per_object(&self, n: u64) {
        self.server.members_per_object.store(n.max(1), Ordering::SeqCst);
    }

    /// `{base_url}/v1.0`.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }
}

impl Drop for GraphApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = random_guid();
    let now = now_unix();
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {trace} Timestamp: {}", rfc3339(now, false)),
        "error_codes": [code],
        "timestamp": rfc3339(now, false).replace('T', " "),
        "trace_id": trace,
        "correlation_id": trace,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    json_response(status, JSON, body.to_string())
}

async fn graph_token(State(s): State<Arc<GraphServer>>, Path(tenant): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = s.common.token_gate().await {
        return r;
    }
    match graph_grant(&s, &tenant, &headers, &body) {
        Ok(()) => {
            let (token, lifetime) = s.common.issue("eyJ0eXAiOiJKV1QifQ.fake.", None, s.creds.roles.clone());
            json_response(
                StatusCode::OK,
                JSON,
                json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}).to_string(),
            )
        }
        Err(r) => s.common.refuse_token(r),
    }
}

fn graph_grant(s: &GraphServer, tenant: &str, headers: &HeaderMap, body: &Bytes) -> Result<(), Response> {
    let creds = &s.creds;
    if !tenant.eq_ignore_ascii_case(&creds.tenant_id) {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ));
    }
    let missing = |p: &str| {
        aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{p}'."),
        )
    };
    let Some(form) = form_of(headers, body) else { return Err(missing("grant_type")) };
    let grant = param(&form, "grant_type").unwrap_or("");
    if grant.is_empty() {
        return Err(missing("grant_type"));
    }
    if grant != "client_credentials" {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("basic")).map(|(_, b)| b.trim().to_owned()))
        .and_then(|b| B64.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let dec = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
            Some((dec(id)?, dec(secret)?))
        });
    let (client_id, secret) = match (param(&form, "client_id"), param(&form, "client_secret"), &basic) {
        (_, Some(secret), _) => (param(&form, "client_id").unwrap_or("").to_owned(), secret.to_owned()),
        (_, None, Some((id, secret))) => (id.clone(), secret.clone()),
        (None, None, None) => return Err(missing("client_id")),
        (Some(_), None, None) => {
            return Err(aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ));
        }
    };
    if client_id.is_empty() {
        return Err(missing("client_id"));
    }
    if client_id != creds.client_id {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
        ));
    }
    if secret != creds.client_secret {
        return Err(aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    }
    let scope = param(&form, "scope").unwrap_or("");
    if scope.is_empty() {
        return Err(missing("scope"));
    }
    let ok_scope = |s: &str| s == GRAPH_DEFAULT_SCOPE || s == "00000003-0000-0000-c000-000000000000/.default";
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.len() != 1 || !ok_scope(scopes[0]) {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    Ok(())
}

const USER_ROLES: [&str; 4] = ["User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];
const GROUP_ROLES: [&str; 5] =
    ["GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Prop {
    Id,
    UserPrincipalName,
    DisplayName,
    GivenName,
    Surname,
    Mail,
    AccountEnabled,
    Department,
    JobTitle,
    EmployeeId,
    BusinessPhones,
    MobilePhone,
    OfficeLocation,
    PreferredLanguage,
    CreatedDateTime,
    UserType,
    MailNickname,
    Description,
    MailEnabled,
    SecurityEnabled,
    GroupTypes,
    Visibility,
    /// Group delta only: `members@delta`.
    Members,
}

const USER_PROPS: &[(&str, Prop)] = &[
    ("id", Prop::Id),
    ("userPrincipalName", Prop::UserPrincipalName),
    ("displayName", Prop::DisplayName),
    ("givenName", Prop::GivenName),
    ("surname", Prop::Surname),
    ("mail", Prop::Mail),
    ("accountEnabled", Prop::AccountEnabled),
    ("department", Prop::Department),
    ("jobTitle", Prop::JobTitle),
    ("employeeId", Prop::EmployeeId),
    ("businessPhones", Prop::BusinessPhones),
    ("mobilePhone", Prop::MobilePhone),
    ("officeLocation", Prop::OfficeLocation),
    ("preferredLanguage", Prop::PreferredLanguage),
    ("createdDateTime", Prop::CreatedDateTime),
    ("userType", Prop::UserType),
    ("mailNickname", Prop::MailNickname),
];

const GROUP_PROPS: &[(&str, Prop)] = &[
    ("id", Prop::Id),
    ("displayName", Prop::DisplayName),
    ("description", Prop::Description),
    ("mail", Prop::Mail),
    ("mailEnabled", Prop::MailEnabled),
    ("mailNickname", Prop::MailNickname),
    ("securityEnabled", Prop::SecurityEnabled),
    ("groupTypes", Prop::GroupTypes),
    ("createdDateTime", Prop::CreatedDateTime),
    ("visibility", Prop::Visibility),
];

/// Graph's default user properties (what a request without `$select` gets).
const USER_DEFAULT: &[Prop] = &[
    Prop::BusinessPhones,
    Prop::DisplayName,
    Prop::GivenName,
    Prop::JobTitle,
    Prop::Mail,
    Prop::MobilePhone,
    Prop::OfficeLocation,
    Prop::PreferredLanguage,
    Prop::Surname,
    Prop::UserPrincipalName,
    Prop::Id,
];

fn prop_name(p: Prop) -> &'static str {
    USER_PROPS.iter().chain(GROUP_PROPS).find(|(_, q)| *q == p).map(|(n, _)| *n).unwrap_or("members")
}

/// Parses `$select` against the resource's properties (case-insensitive, as Graph is).
fn parse_select(
    raw: Option<&str>,
    tables: &[&[(&str, Prop)]],
    type_name: &str,
    allow_members: bool,
) -> Result<Option<Vec<Prop>>, Response> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else { return Ok(None) };
    let mut props = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let found = tables.iter().flat_map(|t| t.iter()).find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, p)| *p);
        let prop = match found {
            Some(p) => p,
            None if allow_members && name.eq_ignore_ascii_case("members") => Prop::Members,
            None => {
                return Err(graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    &format!("Parsing OData Select and Expand failed: Could not find a property named '{name}' on type '{type_name}'."),
                ));
            }
        };
        if !props.contains(&prop) {
            props.push(prop);
        }
    }
    Ok(Some(props))
}

fn emit_user_prop(o: &mut Obj, u: &FakeUser, p: Prop) {
    match p {
        Prop::Id => o.str("id", &u.id),
        Prop::UserPrincipalName => o.str("userPrincipalName", &u.primary_email),
        Prop::DisplayName => o.str("displayName", &u.full_name()),
        Prop::GivenName => o.str("givenName", &u.given_name),
        Prop::Surname => o.str("surname", &u.family_name),
        Prop::Mail => o.str("mail", &u.primary_email),
        Prop::AccountEnabled => o.bool("accountEnabled", !u.suspended),
        Prop::Department => o.opt_str("department", u.department.as_deref()),
        Prop::JobTitle => o.opt_str("jobTitle", u.title.as_deref()),
        Prop::EmployeeId => o.opt_str("employeeId", u.employee_id.as_deref()),
        Prop::BusinessPhones => o.raw("businessPhones", "[]"),
        Prop::MobilePhone => o.raw("mobilePhone", "null"),
        Prop::OfficeLocation => o.raw("officeLocation", "null"),
        Prop::PreferredLanguage => o.raw("preferredLanguage", "null"),
        Prop::CreatedDateTime => o.str("createdDateTime", &rfc3339(u.created_at, false)),
        Prop::UserType => o.str("userType", "Member"),
        Prop::MailNickname => o.str("mailNickname", u.primary_email.split('@').next().unwrap_or("")),
        _ => {}
    }
}

fn emit_group_prop(o: &mut Obj, g: &FakeGroup, p: Prop) {
    match p {
        Prop::Id => o.str("id", &g.id),
        Prop::DisplayName => o.str("displayName", &g.name),
        Prop::Description => o.opt_str("description", Some(g.description.as_str()).filter(|d| !d.is_empty())),
        Prop::Mail => o.str("mail", &g.email),
        Prop::MailEnabled => o.bool("mailEnabled", true),
        Prop::MailNickname => o.str("mailNickname", g.email.split('@').next().unwrap_or("")),
        Prop::SecurityEnabled => o.bool("securityEnabled", true),
        Prop::GroupTypes => o.raw("groupTypes", "[]"),
        Prop::CreatedDateTime => o.str("createdDateTime", "2024-01-01T00:00:00Z"),
        Prop::Visibility => o.raw("visibility", "null"),
        _ => {}
    }
}

fn graph_user_json(out: &mut String, st: &DirState, u: &FakeUser, props: &[Prop], always_id: bool, manager: bool) {
    let mut o = Obj::new(out);
    if always_id && !props.contains(&Prop::Id) {
        o.str("id", &u.id);
    }
    for p in props {
        emit_user_prop(&mut o, u, *p);
    }
    if manager && let Some(m) = u.manager.as_deref().filter(|m| st.users.contains_key(*m)) {
        let mut mo = Obj::new(o.key("manager"));
        mo.str("@odata.type", "#microsoft.graph.user");
        mo.str("id", m);
        mo.end();
    }
    o.end();
}

/// `{"@odata.context":…,"value":[…],"@odata.nextLink"|"@odata.deltaLink":…}`.
fn graph_list(context: &str, items: &[String], link: Option<(&str, String)>) -> String {
    let mut out = String::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 300);
    let mut o = Obj::new(&mut out);
    o.str("@odata.context", context);
    if let Some((name, url)) = &link
        && *name == "@odata.nextLink"
    {
        o.str(name, url);
    }
    {
        let out = o.key("value");
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(item);
        }
        out.push(']');
    }
    if let Some((name, url)) = &link
        && *name == "@odata.deltaLink"
    {
        o.str(name, url);
    }
    o.end();
    out
}

fn context_url(base: &str, set: &str, props: &Option<Vec<Prop>>) -> String {
    match props {
        Some(p) => format!("{base}/v1.0/$metadata#{set}({})", p.iter().map(|p| prop_name(*p)).collect::<Vec<_>>().join(",")),
        None => format!("{base}/v1.0/$metadata#{set}"),
    }
}

/// The request's own query options with `$skiptoken` replaced, on this server's base URL.
fn next_link(base: &str, path: &str, q: &[(String, String)], skiptoken: &str) -> String {
    let mut url = format!("{base}{path}?");
    for (k, v) in q.iter().filter(|(k, _)| !k.trim_start_matches('$').eq_ignore_ascii_case("skiptoken")) {
        let _ = write!(url, "{}={}&", k, enc(v));
    }
    let _ = write!(url, "$skiptoken={skiptoken}");
    url
}

fn unsupported_graph(q: &[(String, String)], names: &[&str]) -> Result<(), Response> {
    for n in names {
        if odata_param(q, n).is_some() {
            return Err(graph_error(
                StatusCode::BAD_REQUEST,
                "Request_UnsupportedQuery",
                &format!("The query option '${}' is not supported by the fake Graph API.", n.trim_start_matches('$')),
            ));
        }
    }
    Ok(())
}

fn graph_top(q: &[(String, String)]) -> Result<usize, Response> {
    let raw = odata_param(q, "top");
    page_size(raw, 100, GRAPH_MAX_PAGE).map_err(|_| {
        graph_error(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            &format!("Invalid page size specified: '{}'. Must be between 1 and 999 inclusive.", raw.unwrap_or("")),
        )
    })
}

fn graph_skip_after(q: &[(String, String)], kind: &str) -> Result<Option<String>, ()> {
    match odata_param(q, "skiptoken").filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => match decode_token(t) {
            Some(p) if p.len() == 2 && p[0] == kind => Ok(Some(p[1].clone())),
            _ => Err(()),
        },
    }
}

fn bad_skiptoken() -> Response {
    graph_error(StatusCode::BAD_REQUEST, "Request_BadRequest", "The specified page token value has expired or is invalid.")
}

/// `$expand=manager` or `manager($select=id…)`: the manager's id.
fn graph_expand_manager(q: &[(String, String)]) -> Result<bool, Response> {
    match odata_param(q, "expand") {
        None => Ok(false),
        Some(e) if e.trim().eq_ignore_ascii_case("manager") || e.trim().to_ascii_lowercase().starts_with("manager(") => Ok(true),
        Some(e) => Err(graph_error(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            &format!("$expand={e} is not supported by the fake Graph API (only manager)."),
        )),
    }
}

async fn graph_users(State(s): State<Arc<GraphServer>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let pass = match s.common.gate(Flavor::Graph, "users", &headers, &USER_ROLES).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = parse_query(raw);
    if let Err(r) = unsupported_graph(&q, &["filter", "search", "orderby", "skip", "count"]) {
        return r;
    }
    let select = match parse_select(odata_param(&q, "select"), &[USER_PROPS], "microsoft.graph.user", false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let top = match graph_top(&q) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let manager = match graph_expand_manager(&q) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Ok(after) = graph_skip_after(&q, "users") else { return bad_skiptoken() };
    let base = &s.common.base_url;
    let props: &[Prop] = select.as_deref().unwrap_or(USER_DEFAULT);
    let st = s.common.dir.lock();
    let page: Vec<&UserRec> = match &after {
        None => st.users.values().take(top + 1).collect(),
        Some(a) => st.users.range::<String, _>((Excluded(a), Unbounded)).map(|(_, u)| u).take(top + 1).collect(),
    };
    let link = (page.len() > top)
        .then(|| ("@odata.nextLink", next_link(base, "/v1.0/users", &q, &encode_token(&["users", &page[top - 1].user.id]))));
    let items: Vec<String> = page
        .iter()
        .take(top)
        .map(|u| {
            let mut out = String::with_capacity(400);
            graph_user_json(&mut out, &st, &u.user, props, false, manager);
            out
        })
        .collect();
    drop(st);
    let body = graph_list(&context_url(base, "users", &select), &items, link);
    ok_body(Flavor::Graph, &pass, body)
}

async fn graph_user(State(s): State<Arc<GraphServer>>, headers: HeaderMap, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let pass = match s.common.gate(Flavor::Graph, "users.get", &headers, &USER_ROLES).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = parse_query(raw);
    let select = match parse_select(odata_param(&q, "select"), &[USER_PROPS], "microsoft.graph.user", false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let manager = match graph_expand_manager(&q) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let st = s.common.dir.lock();
    let rec = st.users.get(&id).or_else(|| st.users_by_email.get(&id.to_ascii_lowercase()).and_then(|i| st.users.get(i)));
    let Some(rec) = rec else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        );
    };
    let mut out = String::new();
    graph_user_json(&mut out, &st, &rec.user, select.as_deref().unwrap_or(USER_DEFAULT), false, manager);
    drop(st);
    // A single entity carries its context first.
    let mut body = String::with_capacity(out.len() + 100);
    let mut o = Obj::new(&mut body);
    o.str("@odata.context", &format!("{}/$entity", context_url(&s.common.base_url, "users", &select)));
    if out.len() > 2 {
        o.out.push(',');
        o.out.push_str(&out[1..out.len() - 1]);
    }
    o.end();
    ok_body(Flavor::Graph, &pass, body)
}

fn graph_group_json(out: &mut String, g: &FakeGroup, props: &[Prop]) {
    let mut o = Obj::new(out);
    for p in props {
        emit_group_prop(&mut o, g, *p);
    }
    o.end();
}

const GROUP_DEFAULT: &[Prop] = &[
    Prop::Id,
    Prop::CreatedDateTime,
    Prop::Description,
    Prop::DisplayName,
    Prop::GroupTypes,
    Prop::Mail,
    Prop::MailEnabled,
    Prop::MailNickname,
    Prop::SecurityEnabled,
    Prop::Visibility,
];

async fn graph_groups(State(s): State<Arc<GraphServer>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let pass = match s.common.gate(Flavor::Graph, "groups", &headers, &GROUP_ROLES).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = parse_query(raw);
    if let Err(r) = unsupported_graph(&q, &["filter", "search", "orderby", "skip", "count", "expand"]) {
        return r;
    }
    let select = match parse_select(odata_param(&q, "select"), &[GROUP_PROPS], "microsoft.graph.group", false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let top = match graph_top(&q) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Ok(after) = graph_skip_after(&q, "groups") else { return bad_skiptoken() };
    let base = &s.common.base_url;
    let props: &[Prop] = select.as_deref().unwrap_or(GROUP_DEFAULT);
    let st = s.common.dir.lock();
    let page: Vec<&GroupRec> = match &after {
        None => st.groups.values().take(top + 1).collect(),
        Some(a) => st.groups.range::<String, _>((Excluded(a), Unbounded)).map(|(_, g)| g).take(top + 1).collect(),
    };
    let link = (page.len() > top)
        .then(|| ("@odata.nextLink", next_link(base, "/v1.0/groups", &q, &encode_token(&["groups", &page[top - 1].group.id]))));
    let items: Vec<String> = page
        .iter()
        .take(top)
        .map(|g| {
            let mut out = String::new();
            graph_group_json(&mut out, &g.group, props);
            out
        })
        .collect();
    drop(st);
    let body = graph_list(&context_url(base, "groups", &select), &items, link);
    ok_body(Flavor::Graph, &pass, body)
}

async fn graph_members(State(s): State<Arc<GraphServer>>, headers: HeaderMap, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let pass = match s.common.gate(Flavor::Graph, "members", &headers, &GROUP_ROLES).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = parse_query(raw);
    if let Err(r) = unsupported_graph(&q, &["filter", "search", "orderby", "skip", "count", "expand"]) {
        return r;
    }
    let select = match parse_select(odata_param(&q, "select"), &[USER_PROPS, GROUP_PROPS], "microsoft.graph.directoryObject", false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let top = match graph_top(&q) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let base = &s.common.base_url;
    let st = s.common.dir.lock();
    let Some(rec) = st.groups.get(&id) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        );
    };
    let offset = match odata_param(&q, "skiptoken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => match decode_token(t) {
            Some(p) if p.len() == 3 && p[0] == "members" && p[1] == id => match p[2].parse::<usize>() {
                Ok(n) => n,
                Err(_) => return bad_skiptoken(),
            },
            _ => return bad_skiptoken(),
        },
    };
    let members = &rec.group.members;
    let start = offset.min(members.len());
    let end = (start + top).min(members.len());
    let link = (end < members.len()).then(|| {
        ("@odata.nextLink", next_link(base, &format!("/v1.0/groups/{id}/members"), &q, &encode_token(&["members", &id, &end.to_string()])))
    });
    let items: Vec<String> = members[start..end]
        .iter()
        .map(|m| {
            let mut out = String::new();
            let mut o = Obj::new(&mut out);
            match m {
                FakeMember::User(uid) => {
                    o.str("@odata.type", "#microsoft.graph.user");
                    if let Some(u) = st.users.get(uid) {
                        let props = select.as_deref().unwrap_or(USER_DEFAULT);
                        for p in props.iter().filter(|p| USER_PROPS.iter().any(|(_, q)| q == *p)) {
                            emit_user_prop(&mut o, &u.user, *p);
                        }
                    }
                }
                FakeMember::Group(gid) => {
                    o.str("@odata.type", "#microsoft.graph.group");
                    if let Some(g) = st.groups.get(gid) {
                        let props = select.as_deref().unwrap_or(GROUP_DEFAULT);
                        for p in props.iter().filter(|p| GROUP_PROPS.iter().any(|(_, q)| q == *p)) {
                            emit_group_prop(&mut o, &g.group, *p);
                        }
                    }
                }
            }
            o.end();
            out
        })
        .collect();
    drop(st);
    let body = graph_list(&format!("{base}/v1.0/$metadata#directoryObjects"), &items, link);
    ok_body(Flavor::Graph, &pass, body)
}

// --- Graph delta -----------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum DeltaKind {
    Users,
    Groups,
}

impl DeltaKind {
    fn tag(self) -> &'static str {
        match self {
            DeltaKind::Users => "u",
            DeltaKind::Groups => "g",
        }
    }

    fn path(self) -> &'static str {
        match self {
            DeltaKind::Users => "/v1.0/users/delta",
            DeltaKind::Groups => "/v1.0/groups/delta",
        }
    }
}

/// Where a delta session stands. Tokens carry it (base64url): the kind, the fault epoch, the
/// `$select`, the page size and the position. A position names the last object handed out
/// (`after`, exclusive) or, when `off` > 0, a group whose `members@delta` were cut after `off`
/// members (resume there).
enum DeltaPos {
    /// The first pass: every live object by id; ends in a deltaLink at `start`.
    Full { start: u64, after: Option<String>, off: usize },
    /// The change log's entries with versions in (since, snap]; ends in a deltaLink at `snap`.
    Changes { since: u64, snap: u64, after: Option<(u64, String)>, off: usize },
}

struct DeltaSession {
    select: String,
    page: usize,
    pos: DeltaPos,
}

fn delta_token(kind: DeltaKind, epoch: u64, sess: &DeltaSession) -> String {
    let (e, page) = (epoch.to_string(), sess.page.to_string());
    match &sess.pos {
        DeltaPos::Full { start, after, off } => {
            encode_token(&[kind.tag(), &e, &sess.select, &page, "F", &start.to_string(), after.as_deref().unwrap_or(""), &off.to_string()])
        }
        DeltaPos::Changes { since, snap, after, off } => {
            let (av, aid) = after.as_ref().map(|(v, id)| (v.to_string(), id.as_str())).unwrap_or_default();
            encode_token(&[kind.tag(), &e, &sess.select, &page, "C", &since.to_string(), &snap.to_string(), &av, aid, &off.to_string()])
        }
    }
}

fn delta_link_token(kind: DeltaKind, epoch: u64, select: &str, page: usize, version: u64) -> String {
    encode_token(&[kind.tag(), &epoch.to_string(), select, &page.to_string(), "L", &version.to_string()])
}

/// Decodes a skip or delta token; None when it is unknown, of another kind, or expired.
fn decode_delta(kind: DeltaKind, epoch: u64, version_now: u64, token: &str, want_link: bool) -> Option<DeltaSession> {
    let p = decode_token(token)?;
    if p.len() < 6 || p[0] != kind.tag() || p[1].parse::<u64>().ok()? != epoch {
        return None;
    }
    let select = p[2].clone();
    let page = p[3].parse::<usize>().ok().filter(|n| (1..=GRAPH_MAX_PAGE).contains(n))?;
    let num = |i: usize| p.get(i).and_then(|s| s.parse::<u64>().ok()).filter(|v| *v <= version_now);
    let off = |i: usize| p.get(i).and_then(|s| s.parse::<usize>().ok());
    let pos = match (p[4].as_str(), want_link) {
        ("L", true) if p.len() == 6 => DeltaPos::Changes { since: num(5)?, snap: version_now, after: None, off: 0 },
        ("F", false) if p.len() == 8 => {
            DeltaPos::Full { start: num(5)?, after: Some(p[6].clone()).filter(|a| !a.is_empty()), off: off(7)? }
        }
        ("C", false) if p.len() == 10 => DeltaPos::Changes {
            since: num(5)?,
            snap: num(6)?,
            after: if p[8].is_empty() { None } else { Some((num(7)?, p[8].clone())) },
            off: off(9)?,
        },
        _ => return None,
    };
    Some(DeltaSession { select, page, pos })
}

fn max_page_pref(headers: &HeaderMap) -> Option<usize> {
    headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case("odata.maxpagesize") { v.trim().parse::<usize>().ok() } else { None }
    })
}

async fn graph_users_delta(State(s): State<Arc<GraphServer>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    graph_delta(s, DeltaKind::Users, headers, raw).await
}

async fn graph_groups_delta(State(s): State<Arc<GraphServer>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    graph_delta(s, DeltaKind::Groups, headers, raw).await
}

fn gone(base: &str, kind: DeltaKind) -> Response {
    let mut r = graph_error_inner(
        StatusCode::GONE,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
        Some("resyncRequired"),
    );
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&format!("{base}{}", kind.path())).unwrap());
    r
}

/// Members added or removed in (since, snap], net of each other, in member order.
fn member_delta(rec: &GroupRec, since: u64, snap: u64) -> BTreeMap<&FakeMember, bool> {
    let from = rec.member_log.partition_point(|c| c.version <= since);
    let mut net = BTreeMap::new();
    for c in rec.member_log[from..].iter().take_while(|c| c.version <= snap) {
        net.insert(&c.member, c.added);
    }
    net
}

fn push_member_ref(out: &mut String, m: &FakeMember, removed: bool) {
    let mut o = Obj::new(out);
    o.str("@odata.type", if matches!(m, FakeMember::User(_)) { "#microsoft.graph.user" } else { "#microsoft.graph.group" });
    o.str("id", m.id());
    if removed {
        o.raw("@removed", "{\"reason\":\"deleted\"}");
    }
    o.end();
}

fn removed_json(id: &str, how: Removal) -> String {
    let mut out = String::new();
    let mut o = Obj::new(&mut out);
    o.str("id", id);
    o.raw("@removed", &format!("{{\"reason\":\"{}\"}}", how.reason()));
    o.end();
    out
}

/// A group in a delta page; a continuation (more `members@delta` of a group cut over several
/// objects) has only its id and members.
fn graph_group_delta_json(rec: &GroupRec, props: &[Prop], members: Option<&[(&FakeMember, bool)]>, continuation: bool) -> String {
    let mut out = String::new();
    let mut o = Obj::new(&mut out);
    if continuation || !props.contains(&Prop::Id) {
        o.str("id", &rec.group.id);
    }
    if !continuation {
        for p in props {
            emit_group_prop(&mut o, &rec.group, *p);
        }
    }
    if let Some(ms) = members {
        let out = o.key("members@delta");
        out.push('[');
        for (i, (m, added)) in ms.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_member_ref(out, m, !*added);
        }
        out.push(']');
    }
    o.end();
    out
}

async fn graph_delta(s: Arc<GraphServer>, kind: DeltaKind, headers: HeaderMap, raw: Option<String>) -> Response {
    let (endpoint, roles): (&str, &[&str]) = match kind {
        DeltaKind::Users => ("users.delta", &USER_ROLES),
        DeltaKind::Groups => ("groups.delta", &GROUP_ROLES),
    };
    let pass = match s.common.gate(Flavor::Graph, endpoint, &headers, roles).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = parse_query(raw);
    if let Err(r) = unsupported_graph(&q, &["filter", "search", "orderby", "skip", "count", "expand"]) {
        return r;
    }
    let base = s.common.base_url.clone();
    let epoch = s.common.faults.delta_epoch.load(Ordering::SeqCst);
    let pref = max_page_pref(&headers).map(|n| n.clamp(1, GRAPH_MAX_PAGE));
    let (tables, type_name): (&[&[(&str, Prop)]], &str) = match kind {
        DeltaKind::Users => (&[USER_PROPS], "microsoft.graph.user"),
        DeltaKind::Groups => (&[GROUP_PROPS], "microsoft.graph.group"),
    };
    let st = s.common.dir.lock();
    let gone_now = |s: &GraphServer| {
        s.common.count(|st| st.gone += 1);
        gone(&s.common.base_url, kind)
    };
    let mut sess = if let Some(t) = odata_param(&q, "skiptoken").filter(|t| !t.is_empty()) {
        match decode_delta(kind, epoch, st.version, t, false) {
            Some(sess) => sess,
            None => return gone_now(&s),
        }
    } else if let Some(t) = odata_param(&q, "deltatoken").filter(|t| !t.is_empty()) {
        if t.eq_ignore_ascii_case("latest") {
            let select = odata_param(&q, "select").unwrap_or("").to_owned();
            if let Err(r) = parse_select(Some(&select), tables, type_name, kind == DeltaKind::Groups) {
                return r;
            }
            let props = parse_select(Some(&select), tables, type_name, kind == DeltaKind::Groups).unwrap_or(None);
            let token = delta_link_token(kind, epoch, &select, pref.unwrap_or(GRAPH_DELTA_PAGE), st.version);
            let set = if kind == DeltaKind::Users { "users" } else { "groups" };
            let body = graph_list(
                &context_url(&base, set, &props),
                &[],
                Some(("@odata.deltaLink", format!("{base}{}?$deltatoken={token}", kind.path()))),
            );
            drop(st);
            return ok_body(Flavor::Graph, &pass, body);
        }
        match decode_delta(kind, epoch, st.version, t, true) {
            Some(sess) => sess,
            None => return gone_now(&s),
        }
    } else {
        let select = odata_param(&q, "select").unwrap_or("").to_owned();
        if let Err(r) = parse_select(Some(&select), tables, type_name, kind == DeltaKind::Groups) {
            return r;
        }
        DeltaSession { select, page: GRAPH_DELTA_PAGE, pos: DeltaPos::Full { start: st.version, after: None, off: 0 } }
    };
    if let Some(p) = pref {
        sess.page = p;
    }
    let props = parse_select(Some(&sess.select), tables, type_name, kind == DeltaKind::Groups).unwrap_or(None);
    let with_members = kind == DeltaKind::Groups && props.as_ref().is_none_or(|p| p.contains(&Prop::Members));
    let fields: Vec<Prop> = match (&props, kind) {
        (Some(p), _) => p.iter().copied().filter(|p| *p != Prop::Members).collect(),
        (None, DeltaKind::Users) => USER_DEFAULT.to_vec(),
        (None, DeltaKind::Groups) => GROUP_DEFAULT.to_vec(),
    };
    let page = sess.page;
    let chunk = s.members_per_object.load(Ordering::SeqCst).max(1) as usize;
    let mut items: Vec<String> = Vec::with_capacity(page.min(1024));
    let (full, resume_key, resume_off) = match &sess.pos {
        DeltaPos::Full { after, off, .. } => (true, after.clone().map(|a| (0, a)), *off),
        DeltaPos::Changes { after, off, .. } => (false, after.clone(), *off),
    };
    // The log entries (or, in the full pass, the live objects with version 0) from the position.
    let entries: Box<dyn Iterator<Item = (u64, &String)> + '_> = match &sess.pos {
        DeltaPos::Full { after, off, .. } => {
            let lower = match after {
                None => Unbounded,
                Some(a) if *off > 0 => Included(a),
                Some(a) => Excluded(a),
            };
            match kind {
                DeltaKind::Users => Box::new(st.users.range::<String, _>((lower, Unbounded)).map(|(k, _)| (0, k))),
                DeltaKind::Groups => Box::new(st.groups.range::<String, _>((lower, Unbounded)).map(|(k, _)| (0, k))),
            }
        }
        DeltaPos::Changes { since, snap, after, off } => {
            let log = if kind == DeltaKind::Users { &st.user_changes } else { &st.group_changes };
            let lower = match after {
                None => Included((since + 1, String::new())),
                Some((v, id)) if *off > 0 => Included((*v, id.clone())),
                Some((v, id)) => Excluded((*v, id.clone())),
            };
            let snap = *snap;
            Box::new(log.range((lower, Unbounded)).take_while(move |(v, _)| *v <= snap).map(|(v, id)| (*v, id)))
        }
    };
    let (since, snap) = match &sess.pos {
        DeltaPos::Full { start, .. } => (0, *start),
        DeltaPos::Changes { since, snap, .. } => (*since, *snap),
    };
    // Where the page stopped: the entry and member offset not yet handed out; and the last
    // entry handed out whole.
    let mut stop: Option<((u64, String), usize)> = None;
    let mut last_done: Option<(u64, String)> = None;
    'entries: for (v, id) in entries {
        let key = (v, id.clone());
        let mut off = if resume_off > 0 && resume_key.as_ref() == Some(&key) { resume_off } else { 0 };
        match kind {
            DeltaKind::Users => {
                let obj = match st.users.get(id) {
                    Some(u) => {
                        let mut out = String::with_capacity(400);
                        graph_user_json(&mut out, &st, &u.user, &fields, true, false);
                        Some(out)
                    }
                    None if !full => st.removed_users.get(id).map(|(_, how)| removed_json(id, *how)),
                    None => None,
                };
                if let Some(obj) = obj {
                    if items.len() == page {
                        stop = Some((key, 0));
                        break 'entries;
                    }
                    items.push(obj);
                }
            }
            DeltaKind::Groups => match st.groups.get(id) {
                Some(rec) => {
                    let members: Option<Vec<(&FakeMember, bool)>> = if !with_members {
                        None
                    } else if full {
                        Some(rec.group.members.iter().map(|m| (m, true)).collect())
                    } else {
                        Some(member_delta(rec, since, snap).into_iter().collect::<Vec<_>>()).filter(|m| !m.is_empty())
                    };
                    loop {
                        if items.len() == page {
                            stop = Some((key, off));
                            break 'entries;
                        }
                        match &members {
                            Some(ms) => {
                                let end = (off + chunk).min(ms.len());
                                items.push(graph_group_delta_json(rec, &fields, Some(&ms[off..end]), off > 0));
                                if end < ms.len() {
                                    off = end;
                                    continue;
                                }
                            }
                            None => items.push(graph_group_delta_json(rec, &fields, None, false)),
                        }
                        break;
                    }
                }
                None if !full => {
                    if let Some((_, how)) = st.removed_groups.get(id) {
                        if items.len() == page {
                            stop = Some((key, 0));
                            break 'entries;
                        }
                        items.push(removed_json(id, *how));
                    }
                }
                None => {}
            },
        }
        last_done = Some(key);
    }
    let final_version = snap;
    // The position after this page, or None when the session is done.
    let next_pos: Option<DeltaPos> = stop.map(|(key, off)| {
        let (after, off) = if off > 0 { (Some(key), off) } else { (last_done.clone(), 0) };
        match &sess.pos {
            DeltaPos::Full { start, .. } => DeltaPos::Full { start: *start, after: after.map(|(_, id)| id), off },
            DeltaPos::Changes { since, snap, .. } => DeltaPos::Changes { since: *since, snap: *snap, after, off },
        }
    });
    drop(st);
    let link = match next_pos {
        Some(pos) => {
            let next = DeltaSession { select: sess.select.clone(), page, pos };
            ("@odata.nextLink", format!("{base}{}?$skiptoken={}", kind.path(), delta_token(kind, epoch, &next)))
        }
        None => (
            "@odata.deltaLink",
            format!("{base}{}?$deltatoken={}", kind.path(), delta_link_token(kind, epoch, &sess.select, page, final_version)),
        ),
    };
    let set = if kind == DeltaKind::Users { "users" } else { "groups" };
    let body = graph_list(&context_url(&base, set, &props), &items, Some(link));
    let mut r = ok_body(Flavor::Graph, &pass, body);
    if pref.is_some() {
        r.headers_mut().insert("preference-applied", HeaderValue::from_str(&format!("odata.maxpagesize={page}")).unwrap());
    }
    r
}
