//! The default app end to end: the real binary, real sockets.
