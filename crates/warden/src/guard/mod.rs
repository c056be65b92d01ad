//! Content guards: rules over what a request asks for and says. [`models`] allows and denies
//! the requested model; [`normalize`] folds disguised text before the detectors read it;
//! [`injection`] scores prompt injection; [`detect`] finds secrets and personal data; [`stream`] redacts answers that arrive in pieces; [`output`] filters the upstream's answers.

pub mod detect;
pub mod external;
pub mod injection;
pub mod models;
pub mod normalize;
pub mod output;
pub mod stream;
