//! hipache-syncer
