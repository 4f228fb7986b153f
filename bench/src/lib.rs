//! `railyard-bench`: replays the Alibaba GPU trace (openb, Weng et al.,
//! ATC'23) through Railyard's placement policy and the baselines it is
//! compared with, the way the FGD paper measures them.

pub mod gang;
pub mod load;
pub mod replay;
pub mod report;
pub mod run;
pub mod trace;
pub mod variants;
