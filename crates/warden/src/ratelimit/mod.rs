//! Rate limiting (DESIGN.md §2 steps 9 and 13). This module holds the algorithms; the stores
//! (in-process and Redis) and the layer build on them.

pub mod algorithm;
