// The package carries its own copy of the contract, so that a tarball from `npm pack`
// works without the repository beside it. The repository's proto/ is the only source.
'use strict';
const fs = require('fs');
const path = require('path');

const rel = path.join('speakerswitch', 'v1', 'speakerswitch.proto');
const from = path.resolve(__dirname, '..', '..', '..', 'proto', rel);
const to = path.resolve(__dirname, '..', 'proto', rel);
fs.mkdirSync(path.dirname(to), { recursive: true });
fs.copyFileSync(from, to);
