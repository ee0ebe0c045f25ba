//! The advisory lock that keeps two processes from changing a keystore at once
//! (`flock` through `std::fs::File::try_lock`; released when the process exits, even by
//! `kill -9`).

use std::fs::{File, OpenOptions, Permissions, TryLockError};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::LockError;
use crate::fsx::FILE_MODE;
use crate::layout::Layout;

/// How long a writer waits for another one before giving up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// Holds the keystore lock until dropped.
#[derive(Debug)]
pub(crate) struct Lock {
    file: File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Takes the exclusive lock of the keystore in `layout`, waiting up to 30 s.
pub(crate) fn acquire(layout: &Layout) -> Result<Lock, LockError> {
    let path = layout.lock_file();
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(io)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(io)?;
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Lock { file }),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => thread::sleep(POLL),
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Busy {
                    home: layout.home().to_owned(),
                    path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
}
