//! The keystore's audit log: appending events, and verifying the chain against the
//! anchor sealed in the keystore.

use super::Keystore;
use crate::audit::{self, AuditEvent, AuditOp, AuditSummary, Outcome};
use crate::error::AuditError;
use crate::lock;

impl Keystore {
    /// Appends an event to the audit log (for operations that change no key, such as
    /// `export-public`, or that other modules perform, such as backups).
    ///
    /// # Errors
    ///
    /// Lock or I/O errors.
    pub fn log(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let _lock = lock::acquire(&self.layout)?;
        self.audit_log()
            .record(event)
            .map_err(|source| AuditError::Io {
                path: self.layout.audit_log(),
                source,
            })
    }

    /// Verifies the audit log: its chain, and that the line of the keystore's last change
    /// (sealed in the keystore as its anchor) is in it unchanged. Logs the verification.
    ///
    /// # Errors
    ///
    /// [`AuditError::Broken`] or [`AuditError::AnchorMissing`]; I/O.
    pub fn verify_audit(&mut self) -> Result<AuditSummary, AuditError> {
        if let Err(e) = self.reload() {
            let _ = self.log(
                &AuditEvent::new(AuditOp::AuditVerify)
                    .with_outcome(Outcome::Failed)
                    .with_detail(e.to_string()),
            );
            return Err(AuditError::Tampered {
                path: self.layout.audit_log(),
                problem: e.to_string(),
            });
        }
        let result = {
            let _lock = lock::acquire(&self.layout)?;
            audit::verify_with_anchor(&self.audit_log(), self.ring.body.audit_anchor.as_deref())
        };
        let event = match &result {
            Ok(summary) => AuditEvent::new(AuditOp::AuditVerify)
                .with_detail(format!("{} lines intact", summary.lines)),
            Err(e) => AuditEvent::new(AuditOp::AuditVerify)
                .with_outcome(Outcome::Failed)
                .with_detail(e.to_string()),
        };
        {
            // A failed verification stays on record in the head.
            let _lock = lock::acquire(&self.layout)?;
            self.audit_log()
                .with_broken(result.as_ref().err().map(ToString::to_string))
                .record(&event)
                .map_err(|source| AuditError::Io {
                    path: self.layout.audit_log(),
                    source,
                })?;
        }
        result
    }
}
