// A member added through the admin API or `balancer cluster add` is held to the same rules as cluster.peers in the file.

import { describe, expect, test } from 'vitest';
import { memberProblems } from '../../src/config/file-spec.js';
import { validateConfigText } from '../../src/config/validate.js';

const ADDRESSES = [
  '127.0.0.1:7002',
  'n2.internal:7002',
  'N2.Internal:7002',
  '[::1]:7002',
  ':7002',
  'localhost:65535',
  // Refused by the file, so refused as a member too:
  'bad_host:7002',
  '[not-an-ip]:7002',
  '[127.0.0.1]:7002',
  '::1:7002',
  'n2.internal',
  'n2.internal:0',
  'n2.internal:65536',
  'n2.internal:70000',
  '-n2:7002',
  'n2 internal:7002',
  'n2.internal:port',
  '',
];

describe('member rules', () => {
  test.each(ADDRESSES)('an address is accepted as a member exactly when the file accepts it as a peer: %j', (address) => {
    const asMember = memberProblems('n2', address);
    const inFile = validateConfigText(
      ['cluster:', '  nodeId: n1', '  listen: 127.0.0.1:7001', `  peers: { n1: "127.0.0.1:7001", n2: ${JSON.stringify(address)} }`, '  secret: abc', ''].join('\n'),
      'balancer.yaml',
    );
    expect(asMember.length === 0).toBe(inFile.ok);
    if (!inFile.ok) {
      // The same words: the member check runs the very spec the file's peers are decoded with.
      expect(inFile.problems.map((problem) => problem.message.replace(/^cluster\.peers\.n2: /, ''))).toEqual(asMember.map((line) => line.replace(/^address: /, '')));
    }
  });

  test('node ids follow cluster.nodeId: letters, digits and _ . -, at most 64 characters', () => {
    expect(memberProblems('n2', '127.0.0.1:7002')).toEqual([]);
    expect(memberProblems('n/2', '127.0.0.1:7002')).toEqual(['id: must contain only letters, digits and _ . -, got string "n/2"']);
    expect(memberProblems('x'.repeat(65), '127.0.0.1:7002')).toEqual(['id: must be at most 64 characters long']);
    expect(memberProblems('n/2', 'nowhere')).toHaveLength(2);
  });
});
