//! The domain: one service per concern, each in its own folder, naming the services it
//! uses in its constructor. HTTP handlers call these; these call the store.
//!
//! [`Services`] only wires them together at start-up and lists the background workers.

pub mod account_data;
pub mod accounts;
pub mod admin;
pub mod appservices;
pub mod bounded;
pub mod client_ips;
pub mod devices;
pub mod directory;
pub mod ephemeral;
pub mod federated_directory;
pub mod federation;
pub mod inbound;
pub mod joins;
pub mod key_backup;
pub mod keys;
pub mod locks;
pub mod media;
pub mod metrics;
pub mod openid;
pub mod presence;
pub mod profiles;
pub mod push;
pub mod rate_limit;
pub mod registration_tokens;
pub mod relations;
pub mod remote_keys;
pub mod remote_profiles;
pub mod reports;
pub mod room_directory;
pub mod room_shutdown;
pub mod rooms;
pub mod sender;
pub mod server_health;
pub mod server_keys;
pub mod sliding_sync;
pub mod spaces;
pub mod sync;
pub mod to_device;
pub mod voip;
pub mod workers;

use std::sync::Arc;

use crate::config::Config;
use crate::store::{STATE_DELTA_STREAM, Store};
use account_data::AccountData;
use accounts::Accounts;
use admin::Admin;
use appservices::AppServices;
use appservices::transactions::AppServicePusher;
use client_ips::ClientIps;
use devices::Devices;
use directory::Directory;
use ephemeral::Ephemeral;
use federated_directory::FederatedDirectory;
use federated_directory::pull::PeerSync;
use federation::FederationClient;
use federation::edus::EduHandlers;
use inbound::Inbound;
use joins::Joins;
use joins::resync::PartialStateResync;
use key_backup::KeyBackup;
use keys::Keys;
use keys::device_lists::DeviceListSender;
use media::{Media, MediaConfig};
use metrics::Metrics;
use openid::OpenId;
use presence::Presence;
use profiles::Profiles;
use profiles::propagation::ProfilePropagation;
use push::Push;
use push::evaluate::PushEvaluator;
use push::gateway::PushGateway;
use rate_limit::RateLimiter;
use registration_tokens::RegistrationTokens;
use relations::Relations;
use remote_keys::RemoteKeys;
use remote_profiles::RemoteProfiles;
use remote_profiles::edus::ProfileEdus;
use remote_profiles::fetch::ProfileFetcher;
use remote_profiles::hints::ProfileHints;
use reports::Reports;
use room_directory::RoomDirectory;
use room_shutdown::RoomShutdown;
use rooms::Rooms;
use rooms::history::History;
use sender::Sender;
use server_health::ServerHealth;
use server_keys::ServerKeys;
use sliding_sync::SlidingSync;
use spaces::Spaces;
use sync::ClientSync;
use to_device::ToDevice;
use voip::Voip;
use workers::Worker;

/// Every service, wired; shared by all listeners.
pub struct Services {
    pub config: Config,
    pub server_keys: Arc<ServerKeys>,
    pub health: Arc<ServerHealth>,
    pub remote_keys: Arc<RemoteKeys>,
    pub accounts: Arc<Accounts>,
    pub admin: Arc<Admin>,
    pub appservices: Arc<AppServices>,
    appservice_pusher: Arc<AppServicePusher>,
    pub client_ips: Arc<ClientIps>,
    pub devices: Arc<Devices>,
    pub media: Arc<Media>,
    pub relations: Arc<Relations>,
    pub presence: Arc<Presence>,
    pub openid: Arc<OpenId>,
    pub voip: Arc<Voip>,
    pub reports: Arc<Reports>,
    pub registration_tokens: Arc<RegistrationTokens>,
    pub key_backup: Arc<KeyBackup>,
    pub profiles: Arc<Profiles>,
    pub rooms: Arc<Rooms>,
    pub room_directory: Arc<RoomDirectory>,
    pub room_shutdown: Arc<RoomShutdown>,
    pub spaces: Arc<Spaces>,
    pub joins: Arc<Joins>,
    pub ephemeral: Arc<Ephemeral>,
    pub account_data: Arc<AccountData>,
    pub push: Arc<Push>,
    push_evaluator: Arc<PushEvaluator>,
    push_gateway: Arc<PushGateway>,
    pub sync: Arc<ClientSync>,
    pub sliding_sync: Arc<SlidingSync>,
    pub directory: Arc<Directory>,
    pub federated_directory: Arc<FederatedDirectory>,
    peer_sync: Arc<PeerSync>,
    pub inbound: Arc<Inbound>,
    pub history: Arc<History>,
    pub sender: Arc<Sender>,
    pub profile_propagation: Arc<ProfilePropagation>,
    pub remote_profiles: Arc<RemoteProfiles>,
    profile_hints: Arc<ProfileHints>,
    profile_fetcher: Arc<ProfileFetcher>,
    profile_edus: Arc<ProfileEdus>,
    resync: Arc<PartialStateResync>,
    pub metrics: Arc<Metrics>,
    pub keys: Arc<Keys>,
    pub to_device: Arc<ToDevice>,
    device_list_sender: Arc<DeviceListSender>,
    pub limits: Limits,
}

/// The rate limiters of the `rc_*` config sections.
pub struct Limits {
    pub login_address: RateLimiter,
    pub login_account: RateLimiter,
    pub login_failed: RateLimiter,
    pub registration: RateLimiter,
    pub user_directory: RateLimiter,
    /// Events sent, per user.
    pub message: RateLimiter,
    /// Joins of rooms this server is in, per user.
    pub joins: RateLimiter,
    /// Joins over federation, per user.
    pub remote_joins: RateLimiter,
    /// Joins into one room, per room.
    pub joins_per_room: RateLimiter,
    pub invites_per_room: RateLimiter,
    pub invites_per_user: RateLimiter,
    pub invites_per_issuer: RateLimiter,
    pub room_creation: RateLimiter,
    pub profile: RateLimiter,
    pub reports: RateLimiter,
    pub media_create: RateLimiter,
    pub to_device: RateLimiter,
    /// Registration token validity checks, per client address.
    pub registration_token_validity: RateLimiter,
}

impl Services {
    pub async fn new(config: Config, store: Arc<Store>, server_keys: ServerKeys) -> anyhow::Result<Self> {
        let server_name = config.server_name.clone();
        let server_keys = Arc::new(server_keys);
        let health = Arc::new(ServerHealth::new(store.clone(), &config.federation).await?);
        let client = Arc::new(FederationClient::new(&config, server_keys.clone(), health.clone())?);
        let remote_keys = Arc::new(RemoteKeys::new(&config, client.clone(), server_keys.clone()));
        let rooms =
            Arc::new(Rooms::new(store.clone(), server_keys.clone(), config.default_room_version.clone()).await?);
        let accounts = Arc::new(Accounts::new(
            store.clone(),
            rooms.clone(),
            server_name.clone(),
            config.registration_shared_secret.clone(),
        ));
        let appservices = Arc::new(AppServices::new(&config, store.clone(), accounts.clone())?);
        appservices.create_senders().await?;
        let client_ips = Arc::new(ClientIps::new(store.clone()));
        let devices = Arc::new(Devices::new(store.clone(), client_ips.clone()));
        let profiles = Arc::new(Profiles::new(store.clone(), server_name.clone(), client.clone(), appservices.clone()));
        let admin = Arc::new(Admin::new(
            store.clone(),
            server_name.clone(),
            accounts.clone(),
            devices.clone(),
            client_ips.clone(),
            profiles.clone(),
            rooms.clone(),
            health.clone(),
            appservices.clone(),
        ));
        let profile_propagation = Arc::new(ProfilePropagation::new(store.clone(), profiles.clone(), rooms.clone()));
        let sender =
            Arc::new(Sender::new(store.clone(), server_name.clone(), client.clone(), rooms.clone(), health.clone()));
        let media = Arc::new(Media::new(
            store.clone(),
            server_name.clone(),
            client.clone(),
            MediaConfig::from_config(&config),
            config.media_store_path.clone().unwrap_or_else(|| "media_store".into()),
        ));
        let keys = Arc::new(Keys::new(store.clone(), server_name.clone(), client.clone()));
        let to_device = Arc::new(ToDevice::new(store.clone(), server_name.clone(), sender.clone()));
        let device_list_sender = Arc::new(DeviceListSender::new(keys.clone(), sender.clone()));
        let remote_profiles = Arc::new(RemoteProfiles::new(
            store.clone(),
            server_name.clone(),
            client.clone(),
            sender.clone(),
            health.clone(),
            config.remote_profiles.clone(),
        ));
        let directory = Arc::new(Directory::new(
            store.clone(),
            server_name.to_string(),
            config.user_directory.clone(),
            directory::Unlisted::new(&config.user_directory, appservices.all()),
            store.watch_stream(STATE_DELTA_STREAM),
            profiles.subscribe(),
            remote_profiles.subscribe(),
        ));
        let federated_directory = Arc::new(FederatedDirectory::new(
            store.clone(),
            server_name.clone(),
            client.clone(),
            health.clone(),
            directory.clone(),
            config.federated_user_directory(),
        ));
        let peer_sync = Arc::new(PeerSync::new(federated_directory.clone()));
        let profile_hints =
            Arc::new(ProfileHints::new(remote_profiles.clone(), store.watch_stream(STATE_DELTA_STREAM)));
        let metrics = Arc::new(Metrics::new(store.clone()));
        let profile_fetcher = Arc::new(ProfileFetcher::new(remote_profiles.clone(), metrics.clone()));
        let profile_edus =
            Arc::new(ProfileEdus::new(remote_profiles.clone(), profiles.clone(), federated_directory.peers()));
        let relations = Arc::new(Relations::new(store.clone(), rooms.clone()));
        let presence = Arc::new(Presence::new(rooms.clone(), config.presence.enabled));
        let openid = Arc::new(OpenId::default());
        let voip = Arc::new(Voip::from_config(&config));
        let reports = Arc::new(Reports::new(store.clone(), rooms.clone()));
        let registration_tokens = Arc::new(RegistrationTokens::new(store.clone()));
        let key_backup = Arc::new(KeyBackup::new(store.clone()));
        let account_data = Arc::new(AccountData::new(store.clone(), rooms.clone()));
        let ephemeral = Arc::new(Ephemeral::new(store.clone(), sender.clone(), account_data.clone()));
        let appservice_pusher = Arc::new(AppServicePusher::new(
            appservices.clone(),
            store.clone(),
            rooms.clone(),
            (ephemeral.clone(), presence.clone()),
            to_device.subscribe(),
            metrics.clone(),
        ));
        let push = Arc::new(Push::new(store.clone(), server_name.clone(), account_data.clone()));
        let push_evaluator = Arc::new(PushEvaluator::new(push.clone(), rooms.clone()));
        let ip_filter = Arc::new(federation::discovery::IpFilter::new(
            config.ip_range_blacklist.clone(),
            config.ip_range_whitelist.clone(),
        ));
        let push_gateway = Arc::new(PushGateway::new(push.clone(), ip_filter)?);
        let sync = Arc::new(ClientSync::new(
            store.clone(),
            rooms.clone(),
            ephemeral.clone(),
            account_data.clone(),
            push.clone(),
            keys.clone(),
            to_device.clone(),
        ));
        let spaces = Arc::new(Spaces::new(store.clone(), rooms.clone()));
        let sliding_sync = Arc::new(SlidingSync::new(
            store.clone(),
            rooms.clone(),
            spaces.clone(),
            sync.clone(),
            account_data.clone(),
            push.clone(),
            keys.clone(),
            to_device.clone(),
        ));
        let mut edu_handlers = EduHandlers::default();
        ephemeral.register_edus(&mut edu_handlers);
        keys.register_edus(&mut edu_handlers);
        to_device.register_edus(&mut edu_handlers);
        remote_profiles::edus::register_edus(&mut edu_handlers, remote_profiles.clone(), federated_directory.clone());
        let inbound = Arc::new(Inbound::new(
            store.clone(),
            server_name.clone(),
            client.clone(),
            remote_keys.clone(),
            rooms.clone(),
            health.clone(),
            edu_handlers,
            config.rc_federation,
        ));
        let history = Arc::new(History::new(store.clone(), server_name.clone(), rooms.clone()));
        let room_directory = Arc::new(RoomDirectory::new(
            store.clone(),
            server_name.clone(),
            client.clone(),
            rooms.clone(),
            appservices.clone(),
            (config.allow_public_rooms_over_federation, config.require_membership_for_aliases),
        ));
        let joins = Arc::new(Joins::new(
            store.clone(),
            server_name.clone(),
            server_keys.clone(),
            client,
            rooms.clone(),
            profiles.clone(),
            inbound.clone(),
            sender.clone(),
            config.experimental_features.faster_joins,
        ));
        let resync = Arc::new(PartialStateResync::new(joins.clone()));
        let room_shutdown = Arc::new(RoomShutdown::new(
            store.clone(),
            server_name.clone(),
            rooms.clone(),
            joins.clone(),
            profiles.clone(),
            sender.clone(),
            directory.clone(),
        ));
        let limits = Limits {
            login_address: RateLimiter::new(config.rc_login.address),
            login_account: RateLimiter::new(config.rc_login.account),
            login_failed: RateLimiter::new(config.rc_login.failed_attempts),
            registration: RateLimiter::new(config.rc_registration),
            user_directory: RateLimiter::new(config.rc_user_directory),
            message: RateLimiter::new(config.rc_message),
            joins: RateLimiter::new(config.rc_joins.local),
            remote_joins: RateLimiter::new(config.rc_joins.remote),
            joins_per_room: RateLimiter::new(config.rc_joins_per_room),
            invites_per_room: RateLimiter::new(config.rc_invites.per_room),
            invites_per_user: RateLimiter::new(config.rc_invites.per_user),
            invites_per_issuer: RateLimiter::new(config.rc_invites.per_issuer),
            room_creation: RateLimiter::new(config.rc_room_creation),
            profile: RateLimiter::new(config.rc_profile),
            reports: RateLimiter::new(config.rc_reports),
            media_create: RateLimiter::new(config.rc_media_create),
            to_device: RateLimiter::new(config.rc_to_device),
            registration_token_validity: RateLimiter::new(config.rc_registration_token_validity),
        };
        Ok(Self {
            config,
            server_keys,
            health,
            remote_keys,
            accounts,
            admin,
            appservices,
            appservice_pusher,
            client_ips,
            devices,
            media,
            relations,
            presence,
            openid,
            voip,
            reports,
            registration_tokens,
            key_backup,
            profiles,
            rooms,
            room_directory,
            room_shutdown,
            spaces,
            joins,
            ephemeral,
            account_data,
            push,
            push_evaluator,
            push_gateway,
            sync,
            sliding_sync,
            directory,
            federated_directory,
            peer_sync,
            inbound,
            history,
            sender,
            profile_propagation,
            remote_profiles,
            profile_hints,
            profile_fetcher,
            profile_edus,
            resync,
            metrics,
            keys,
            to_device,
            device_list_sender,
            limits,
        })
    }

    /// The background workers, started together and stopped together.
    pub fn workers(&self) -> Vec<Arc<dyn Worker>> {
        vec![
            self.directory.clone(),
            self.sender.clone(),
            self.profile_propagation.clone(),
            self.ephemeral.clone(),
            self.profile_hints.clone(),
            self.profile_fetcher.clone(),
            self.profile_edus.clone(),
            self.peer_sync.clone(),
            self.push_evaluator.clone(),
            self.push_gateway.clone(),
            self.resync.clone(),
            self.device_list_sender.clone(),
            self.to_device.clone(),
            self.client_ips.clone(),
            self.room_shutdown.clone(),
            self.appservice_pusher.clone(),
        ]
    }
}
