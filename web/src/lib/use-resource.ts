"use client";

import { useCallback, useEffect, useRef, useState } from "react";
import { api } from "./api";
import { useConfig } from "./config";

export type Resource<T> = {
  data: T | undefined;
  error: Error | null;
  loading: boolean;
  reload: () => Promise<void>;
};

/** GET a gateway-api path; keeps the last data while reloading, polls every
 * `pollMs` while set, and retries by itself after an offline error. */
export function useResource<T>(path: string | null, pollMs?: number): Resource<T> {
  const config = useConfig();
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(path !== null);
  const alive = useRef(true);

  const reload = useCallback(async () => {
    if (path === null) return;
    try {
      const value = await api<T>(config, path);
      if (!alive.current) return;
      setData(value);
      setError(null);
    } catch (e) {
      if (!alive.current) return;
      setError(e instanceof Error ? e : new Error(String(e)));
    } finally {
      if (alive.current) setLoading(false);
    }
  }, [config, path]);

  useEffect(() => {
    alive.current = true;
    setLoading(path !== null);
    void reload();
    return () => {
      alive.current = false;
    };
  }, [path, reload]);

  const interval = pollMs ?? (error ? 5000 : undefined);
  useEffect(() => {
    if (!interval || path === null) return;
    const id = window.setInterval(() => void reload(), interval);
    return () => window.clearInterval(id);
  }, [interval, path, reload]);

  return { data, error, loading, reload };
}
