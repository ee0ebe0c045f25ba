//! Shared helpers of the DataMesh benches (see `benches/pipeline.rs`).
