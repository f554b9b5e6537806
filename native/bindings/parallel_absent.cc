// parallel/comm.h in a build without a collective library (node-gyp, DSMOE_DIST=off, or libgloo-dev not
// installed at build time): info() says why and what to install; connect() throws that reason.
#ifndef DSMOE_WITH_GLOO
#include <stdexcept>
#include <string>

#include "../parallel/comm.h"

#ifndef DSMOE_BUILD_SYSTEM
#define DSMOE_BUILD_SYSTEM "unknown"
#endif
#ifndef DSMOE_DIST_OPTION
#define DSMOE_DIST_OPTION "off"
#endif

namespace dsmoe::dist {

Info info() {
  Info in;
  const std::string sys = DSMOE_BUILD_SYSTEM, opt = DSMOE_DIST_OPTION;
  if (sys != "cmake")
    in.reason = "built without distributed training (the " + sys + " build has no collective library; "
                "apt-get install libgloo-dev, then rebuild with cmake: npm run build:addon)";
  else if (opt == "off")
    in.reason = "built without distributed training (DSMOE_DIST=off; rebuild with DSMOE_DIST=auto, "
                "with libgloo-dev installed)";
  else
    in.reason = "built without distributed training (Gloo was not found at build time: "
                "apt-get install libgloo-dev, then rebuild: npm run build:addon)";
  return in;
}

std::shared_ptr<Communicator> connect(const Options&) { throw std::runtime_error(info().reason); }

}  // namespace dsmoe::dist
#endif  // DSMOE_WITH_GLOO
