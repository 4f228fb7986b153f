//! Publishing this node's pool as ResourceSlices.
