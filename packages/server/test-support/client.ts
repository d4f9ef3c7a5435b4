/**
 * The official `freestyle@0.1.63` client, typed for the tests. Its shipped .d.mts leaves out a
 * few runtime members the tests use (`vm.user`, the `Errors` classes); they are declared here.
 */
import * as freestyleModule from "freestyle";
import { Freestyle } from "freestyle";

export type Vm = Awaited<ReturnType<Freestyle["vms"]["create"]>>["vm"];
export type UserVm = Vm & { user(opts: { username: string }): UserVm };
type ErrorClass = new (...args: never[]) => Error & { body: { code: string; message: string } };

export const Errors = (freestyleModule as unknown as { Errors: Record<string, ErrorClass> }).Errors;

export function client(baseUrl: string, apiKey: string): Freestyle {
  return new Freestyle({ baseUrl, apiKey });
}

export function asUser(vm: Vm, username: string): UserVm {
  return (vm as UserVm).user({ username });
}

/** Asserts the promise rejects with the client's typed error class for `code`. */
export async function rejectsWith(p: Promise<unknown>, className: string, code: string): Promise<Error & { body: { code: string; message: string } }> {
  const cls = Errors[className];
  if (!cls) throw new Error(`the client has no error class ${className}`);
  try {
    await p;
  } catch (err) {
    if (!(err instanceof cls)) throw new Error(`expected ${className}, got ${String(err)}`);
    if (err.body.code !== code) throw new Error(`expected code ${code}, got ${err.body.code}`);
    return err;
  }
  throw new Error(`expected ${className}, but it resolved`);
}
