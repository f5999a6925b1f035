// The gRPC health protocol's wire format (grpc.health.v1): the Check request balancer sends and the answer it reads.
//
// Two one-field protobuf messages do not justify a protobuf library: HealthCheckRequest is `string service = 1`,
// HealthCheckResponse is `ServingStatus status = 1`, each in one length-prefixed gRPC message.

export const GRPC_HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';

/** grpc.health.v1.HealthCheckResponse.ServingStatus, by number. */
export const SERVING_STATUS_NAMES: Readonly<Record<number, string>> = { 0: 'UNKNOWN', 1: 'SERVING', 2: 'NOT_SERVING', 3: 'SERVICE_UNKNOWN' };
export const SERVING = 1;

function varint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** The request as one uncompressed gRPC message: a 5-byte prefix (flag, length) and the protobuf. */
export function healthCheckRequest(service: string): Buffer {
  // proto3 leaves a field at its default ('') out, so the whole-server check is an empty message.
  const name = Buffer.from(service, 'utf8');
  const message = service === '' ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt8(0, 0);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** Reads a varint at `offset`; null when it runs past the end or beyond 2^53. */
function readVarint(bytes: Buffer, offset: number): { value: number; next: number } | null {
  let value = 0;
  let scale = 1;
  for (let i = offset; i < bytes.length && i < offset + 8; i++) {
    const byte = bytes[i]!;
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return { value, next: i + 1 };
    scale *= 128;
  }
  return null;
}

/**
 * The serving status in a response body (every DATA byte of the stream), or why it cannot be read. Unknown fields
 * are skipped as protobuf requires; a missing status field is proto3's default, UNKNOWN.
 */
export function servingStatusOf(body: Buffer): { status: number } | { error: string } {
  if (body.length < 5) return { error: body.length === 0 ? 'no response message' : 'a truncated response message' };
  if (body[0] !== 0) return { error: 'a compressed response message (none was accepted)' };
  const length = body.readUInt32BE(1);
  if (body.length < 5 + length) return { error: 'a truncated response message' };
  const message = body.subarray(5, 5 + length);
  let status = 0;
  let offset = 0;
  while (offset < message.length) {
    const tag = readVarint(message, offset);
    if (tag === null) return { error: 'a malformed response message' };
    const field = Math.floor(tag.value / 8);
    const wireType = tag.value % 8;
    offset = tag.next;
    if (wireType === 0) {
      const read = readVarint(message, offset);
      if (read === null) return { error: 'a malformed response message' };
      if (field === 1) status = read.value;
      offset = read.next;
    } else if (wireType === 2) {
      const read = readVarint(message, offset);
      if (read === null) return { error: 'a malformed response message' };
      offset = read.next + read.value;
    } else if (wireType === 1) offset += 8;
    else if (wireType === 5) offset += 4;
    else return { error: 'a malformed response message' };
  }
  if (offset > message.length) return { error: 'a malformed response message' };
  return { status };
}

/** `SERVING`, `NOT_SERVING`, ...; a number outside the enum as `status 7`. */
export function servingStatusName(status: number): string {
  return SERVING_STATUS_NAMES[status] ?? `status ${status}`;
}
