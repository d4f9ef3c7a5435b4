/** An in-page confirmation dialog (with an optional text field), awaited as a promise. */
import { useCallback, useState, type ReactElement } from "react";

interface Ask {
  message: string;
  input?: { label: string; placeholder?: string };
  danger?: boolean;
  resolve: (v: string | false) => void;
}

export type ConfirmFn = (message: string, opts?: { input?: { label: string; placeholder?: string }; danger?: boolean }) => Promise<string | false>;

export function useConfirm(): [ReactElement | null, ConfirmFn] {
  const [ask, setAsk] = useState<Ask | null>(null);
  const [value, setValue] = useState("");
  const confirm = useCallback<ConfirmFn>(
    (message, opts = {}) =>
      new Promise((resolve) => {
        setValue("");
        setAsk({ message, ...opts, resolve });
      }),
    [],
  );
  const done = (v: string | false) => {
    ask?.resolve(v);
    setAsk(null);
  };
  const el = ask ? (
    <div className="modal-backdrop" role="presentation">
      <form
        className="modal"
        role="dialog"
        aria-modal="true"
        data-testid="confirm-dialog"
        onSubmit={(e) => {
          e.preventDefault();
          done(value);
        }}
      >
        <p>{ask.message}</p>
        {ask.input && (
          <label>
            {ask.input.label}
            <input autoFocus value={value} placeholder={ask.input.placeholder} onChange={(e) => setValue(e.target.value)} />
          </label>
        )}
        <div className="row">
          <button type="button" onClick={() => done(false)}>
            Cancel
          </button>
          <button type="submit" className={ask.danger ? "danger" : "primary"} data-testid="confirm-ok" autoFocus={!ask.input}>
            Confirm
          </button>
        </div>
      </form>
    </div>
  ) : null;
  return [el, confirm];
}
