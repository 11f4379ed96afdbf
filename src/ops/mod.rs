//! Operating Flagstaff: backups, the serve loop's shutdown, client addresses behind a proxy,
//! and request logs.

pub mod backup;
pub mod proxy;
pub mod request_log;
