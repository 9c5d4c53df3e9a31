// Headers only; see include/CProbeLibc.h.
