// The boot script `lb app` scaffolds: turns on LoopBack 3's access tokens and ACLs.
'use strict';

module.exports = function enableAuthentication(server) {
  // enable authentication
  server.enableAuth();
};
