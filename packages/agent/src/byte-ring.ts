/**
 * The last `capacity` bytes written, oldest dropped first. Bytes are copied into one buffer
 * (grown on demand up to `capacity`) rather than kept as the chunks they arrived in, so memory is
 * bounded by bytes, not by how many small reads produced them.
 */
export class ByteRing {
  #buf = Buffer.alloc(0);
  #start = 0;
  #length = 0;

  constructor(readonly capacity: number) {}

  push(data: Buffer): void {
    if (data.length === 0) return;
    if (data.length >= this.capacity) {
      this.#buf = Buffer.from(data.subarray(data.length - this.capacity));
      this.#start = 0;
      this.#length = this.capacity;
      return;
    }
    if (this.#length + data.length > this.#buf.length && this.#buf.length < this.capacity) this.#grow(this.#length + data.length);
    const size = this.#buf.length;
    const end = (this.#start + this.#length) % size;
    const first = Math.min(data.length, size - end);
    data.copy(this.#buf, end, 0, first);
    data.copy(this.#buf, 0, first);
    const total = this.#length + data.length;
    if (total > size) this.#start = (this.#start + total - size) % size;
    this.#length = Math.min(total, size);
  }

  /** The retained bytes, oldest first, as one buffer. */
  snapshot(): Buffer {
    const tail = this.#buf.subarray(this.#start, Math.min(this.#start + this.#length, this.#buf.length));
    const head = this.#buf.subarray(0, this.#length - tail.length);
    return Buffer.concat([tail, head]);
  }

  clear(): void {
    this.#buf = Buffer.alloc(0);
    this.#start = 0;
    this.#length = 0;
  }

  #grow(needed: number): void {
    const next = Buffer.alloc(Math.min(this.capacity, Math.max(needed, this.#buf.length * 2, 64 * 1024)));
    this.snapshot().copy(next);
    this.#buf = next;
    this.#start = 0;
  }
}
