/* base/lherror: the names of the host's error codes. */
#include "base/lherror.h"

const char *lh_strerror(int err) {
  switch (err) {
  case LH_OK: return "ok";
  case LH_ENOMEM: return "no memory";
  case LH_ENOTFOUND: return "not found";
  case LH_EEXISTS: return "exists";
  case LH_ENOTNUM: return "not a number";
  case LH_EOVERFLOW: return "overflow";
  case LH_EFULL: return "full";
  case LH_EEMPTY: return "empty";
  case LH_ETIMEDOUT: return "timeout";
  case LH_ESHUTDOWN: return "shutting down";
  case LH_ECANCELLED: return "cancelled";
  case LH_ECLOSED: return "closed";
  case LH_ELIMIT: return "limit reached";
  case LH_EINVAL: return "invalid";
  case LH_ESYSTEM: return "system error";
  default: return "unknown error";
  }
}
