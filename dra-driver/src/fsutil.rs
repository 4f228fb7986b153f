//! Files the driver keeps: written atomically, locked across processes.
