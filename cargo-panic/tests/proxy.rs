//! The network fault proxy (`cargo_panic_core::attack::proxy`) for real, on
//! loopback: a small echo server upstream, a std `TcpStream` client, and the
//! proxy in between. Delays are checked with strict lower bounds (a delay can
//! never be shorter than requested) and generous upper bounds (the machine may
//! be loaded), and every blocking call has a timeout, so a broken proxy fails
//! a test instead of hanging it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cargo_panic_core::attack::proxy::{Direction, Faults, Proxy, ProxyStats, Slice};

const MS: u64 = 1_000_000;
/// Bound of every blocking read in these tests.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// An echo server on 127.0.0.1: one thread per connection, echoes until EOF
/// and then half-closes, so a client's `shutdown(Write)` comes back as EOF.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) => {
                                let _ = conn.shutdown(Shutdown::Write);
                                return;
                            }
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop up.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn listen_any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn start(echo: &Echo, seed: u64) -> Proxy {
    Proxy::start(listen_any(), echo.addr, seed).unwrap()
}

fn connect(proxy: &Proxy) -> TcpStream {
    let s = TcpStream::connect(proxy.local_addr()).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Writes `msg` and reads the same number of bytes back.
fn exchange(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

/// Sends `data` from a second thread while reading the echo, so neither side
/// blocks on full buffers; returns what came back and how long it took.
fn echo_all(s: &TcpStream, data: &[u8]) -> (Vec<u8>, Duration) {
    let data = Arc::new(data.to_vec());
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let t0 = Instant::now();
    let writer = thread::spawn(move || {
        for piece in sent.chunks(64 * 1024) {
            w.write_all(piece).unwrap();
        }
    });
    let mut r = s.try_clone().unwrap();
    let mut back = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 256 * 1024];
    while back.len() < data.len() {
        let n = r.read(&mut buf).expect("reading the echo");
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    let took = t0.elapsed();
    writer.join().unwrap();
    (back, took)
}

/// A recognisable pattern (so a reordering or a lost piece shows).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The connection ended: EOF or a reset, as a read result.
fn ended(r: &io::Result<usize>) -> bool {
    match r {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        ),
    }
}

/// Polls the proxy's counters until `done` holds (they are updated by the
/// proxy's thread, a moment after the bytes moved).
fn wait_stats(proxy: &Proxy, what: &str, done: impl Fn(&ProxyStats) -> bool) -> ProxyStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = proxy.stats();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "stats never showed {what}: {s:#?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn no_faults_echoes_bytes_unchanged_and_counts_them() {
    let echo = Echo::start();
    let proxy = start(&echo, 1);
    assert_eq!(proxy.faults(), Faults::default());
    let mut s = connect(&proxy);
    let msg = b"hello through the fault proxy";
    for _ in 0..10 {
        assert_eq!(exchange(&mut s, msg).unwrap(), msg);
    }
    // Half-close travels both ways: our FIN reaches the echo server, whose
    // FIN comes back as EOF.
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let n = 10 * msg.len() as u64;
    // `closed_clean` is counted before the connection leaves `active`: wait for both.
    let st = wait_stats(&proxy, "the connection closed cleanly", |s| {
        s.closed_clean == 1 && s.active == 0 && s.target_to_client.bytes == n
    });
    assert_eq!(st.accepted, 1);
    assert_eq!(st.active, 0);
    assert_eq!(st.client_to_target.bytes, n);
    assert_eq!(st.resets_injected + st.resets_down + st.upstream_errors, 0);
    let d = &st.target_to_client.delay;
    assert_eq!(d.requested_sum_ns, 0);
    eprintln!(
        "latency 0: achieved delay per chunk mean {} ns, max {} ns, p50 <= {} ns over {} chunks",
        d.mean_achieved_ns(),
        d.achieved_max_ns,
        d.quantile_upper_bound_ns(0.5),
        d.count
    );
    proxy.stop();
}

#[test]
fn megabytes_arrive_intact_and_in_order() {
    let echo = Echo::start();
    let proxy = start(&echo, 2);
    let s = connect(&proxy);
    let data = pattern(8 << 20);
    let (back, took) = echo_all(&s, &data);
    assert!(back == data, "8 MiB came back altered");
    eprintln!(
        "8 MiB echoed through the proxy in {took:?} ({:.0} MiB/s each way)",
        8.0 / took.as_secs_f64()
    );
}

#[test]
fn latency_delays_every_round_trip() {
    let echo = Echo::start();
    let proxy = start(&echo, 3);
    let lat = 50 * MS;
    proxy
        .set_faults(Faults {
            latency_ns: lat,
            ..Faults::default()
        })
        .unwrap();
    let mut s = connect(&proxy);
    for i in 0..5 {
        let t0 = Instant::now();
        let msg = format!("ping {i}");
        assert_eq!(exchange(&mut s, msg.as_bytes()).unwrap(), msg.as_bytes());
        let rtt = t0.elapsed();
        assert!(rtt >= Duration::from_nanos(lat), "round trip {i}: {rtt:?}");
        assert!(
            rtt <= Duration::from_nanos(lat) + Duration::from_secs(1),
            "round trip {i}: {rtt:?}"
        );
    }
    let st = wait_stats(&proxy, "5 delayed chunks", |s| {
        s.target_to_client.delay.count >= 5
    });
    let d = &st.target_to_client.delay;
    assert_eq!(d.mean_requested_ns(), lat);
    assert!(d.mean_achieved_ns() >= lat, "{d:?}");
    assert!(d.achieved_min_ns >= lat, "{d:?}");
    // Requests are not delayed.
    assert_eq!(st.client_to_target.delay.requested_sum_ns, 0);
    eprintln!(
        "latency 50 ms: achieved mean {} ns, max {} ns",
        d.mean_achieved_ns(),
        d.achieved_max_ns
    );
}

#[test]
fn latency_does_not_collapse_throughput() {
    let echo = Echo::start();
    let proxy = start(&echo, 4);
    proxy
        .set_faults(Faults {
            latency_ns: 100 * MS,
            ..Faults::default()
        })
        .unwrap();
    let s = connect(&proxy);
    // 4 MiB in many chunks: if each chunk waited for the previous one's
    // delay, this would take (number of chunks) x 100 ms.
    let data = pattern(4 << 20);
    let (back, took) = echo_all(&s, &data);
    assert!(back == data);
    assert!(took >= Duration::from_millis(100), "{took:?}");
    let st = proxy.stats();
    let chunks = st.target_to_client.chunks;
    assert!(chunks >= 2, "{st:?}");
    assert!(
        took < Duration::from_secs(5),
        "4 MiB in {chunks} chunks took {took:?}: latency is serialising chunks"
    );
}

#[test]
fn jitter_keeps_byte_order() {
    let echo = Echo::start();
    let proxy = start(&echo, 5);
    proxy
        .set_faults(Faults {
            latency_ns: 5 * MS,
            jitter_ns: 5 * MS,
            ..Faults::default()
        })
        .unwrap();
    let mut s = connect(&proxy);
    let mut w = s.try_clone().unwrap();
    // Many small writes, pipelined, so the responses form many chunks with
    // different delays.
    let lines: Vec<u8> = (0..500)
        .flat_map(|i| format!("line {i:04}\n").into_bytes())
        .collect();
    let sent = lines.clone();
    let writer = thread::spawn(move || {
        for l in sent.chunks(10) {
            w.write_all(l).unwrap();
            thread::sleep(Duration::from_micros(200));
        }
    });
    let mut back = vec![0u8; lines.len()];
    s.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == lines, "jitter reordered bytes");
    let st = proxy.stats();
    let d = &st.target_to_client.delay;
    assert!(d.count >= 2);
    assert!(d.achieved_max_ns <= 10 * MS + 1_000 * MS, "{d:?}");
}

#[test]
fn bandwidth_limits_throughput() {
    let echo = Echo::start();
    let proxy = start(&echo, 6);
    let rate = 256 * 1024;
    proxy
        .set_faults(Faults {
            bandwidth_bytes_per_s: Some(rate),
            ..Faults::default()
        })
        .unwrap();
    let s = connect(&proxy);
    let data = pattern(256 * 1024);
    let (back, took) = echo_all(&s, &data);
    assert!(back == data, "data altered by the bandwidth limit");
    assert!(
        took >= Duration::from_millis(900),
        "256 KiB at 256 KiB/s in {took:?}"
    );
    assert!(took <= Duration::from_secs(10), "{took:?}");
    let st = proxy.stats();
    eprintln!(
        "bandwidth 256 KiB/s: 256 KiB echoed in {took:?}; achieved {:.0} B/s to the target over the proxy's life",
        st.throughput_bytes_per_s(Direction::ClientToTarget)
    );
}

#[test]
fn loss_one_resets_the_first_exchange() {
    let echo = Echo::start();
    let proxy = start(&echo, 7);
    proxy
        .set_faults(Faults {
            loss: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let mut s = connect(&proxy);
    let t0 = Instant::now();
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    assert!(ended(&r), "expected a reset or EOF, got {r:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let st = wait_stats(&proxy, "a reset", |s| s.resets_injected >= 1);
    assert_eq!(st.target_to_client.bytes, 0);
}

#[test]
fn loss_zero_never_resets() {
    let echo = Echo::start();
    let proxy = start(&echo, 8);
    proxy
        .set_faults(Faults {
            loss: 0.0,
            ..Faults::default()
        })
        .unwrap();
    let mut s = connect(&proxy);
    for i in 0..50 {
        let msg = format!("exchange {i}");
        assert_eq!(exchange(&mut s, msg.as_bytes()).unwrap(), msg.as_bytes());
    }
    assert_eq!(proxy.stats().resets_injected, 0);
}

#[test]
fn timeout_zero_holds_data_until_lifted() {
    let echo = Echo::start();
    let proxy = start(&echo, 9);
    proxy
        .set_faults(Faults {
            timeout_ns: Some(0),
            ..Faults::default()
        })
        .unwrap();
    let mut s = connect(&proxy);
    s.write_all(b"held").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    match r {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected the read to time out, got {other:?}"),
    }
    // Held, not discarded: lifting the fault lets the bytes through.
    proxy.set_faults(Faults::default()).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"held");
    assert_eq!(exchange(&mut s, b"again").unwrap(), b"again");
}

#[test]
fn timeout_closes_the_connection_after_the_deadline() {
    let echo = Echo::start();
    let proxy = start(&echo, 10);
    proxy
        .set_faults(Faults {
            timeout_ns: Some(200 * MS),
            ..Faults::default()
        })
        .unwrap();
    let t0 = Instant::now();
    let mut s = connect(&proxy);
    s.write_all(b"into the void").unwrap();
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    let took = t0.elapsed();
    assert!(ended(&r), "expected EOF or a reset, got {r:?}");
    assert!(took >= Duration::from_millis(200), "closed after {took:?}");
    assert!(took <= Duration::from_secs(5), "closed after {took:?}");
    wait_stats(&proxy, "a timeout close", |s| s.timeouts_closed == 1);
}

#[test]
fn down_partitions_and_recovers_live() {
    let echo = Echo::start();
    let proxy = start(&echo, 11);
    let mut before = connect(&proxy);
    assert_eq!(exchange(&mut before, b"up").unwrap(), b"up");

    proxy
        .set_faults(Faults {
            down: true,
            ..Faults::default()
        })
        .unwrap();
    // The open connection is reset.
    let mut buf = [0u8; 16];
    let r = before.read(&mut buf);
    assert!(ended(&r), "open connection: expected a reset, got {r:?}");
    // A new one is accepted and closed at once.
    let t0 = Instant::now();
    let mut during = connect(&proxy);
    let _ = during.write_all(b"anyone?");
    let r = during.read(&mut buf);
    assert!(ended(&r), "new connection while down: got {r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let st = wait_stats(&proxy, "the partition", |s| {
        s.resets_down == 1 && s.refused_down == 1
    });
    assert_eq!(st.accepted, 2);

    // Back up: new connections work again.
    proxy.set_faults(Faults::default()).unwrap();
    let mut after = connect(&proxy);
    assert_eq!(exchange(&mut after, b"back").unwrap(), b"back");
}

#[test]
fn slicing_splits_writes_and_paces_them() {
    let echo = Echo::start();
    let proxy = start(&echo, 12);
    let (max_bytes, delay) = (1024usize, 20 * MS);
    proxy
        .set_faults(Faults {
            slice: Some(Slice {
                max_bytes,
                delay_ns: delay,
            }),
            ..Faults::default()
        })
        .unwrap();
    let mut s = connect(&proxy);
    let msg = pattern(8 * 1024);
    let t0 = Instant::now();
    s.write_all(&msg).unwrap();
    let mut back = Vec::new();
    let mut reads = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while back.len() < msg.len() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "EOF after {} bytes", back.len());
        reads.push(n);
        back.extend_from_slice(&buf[..n]);
    }
    let took = t0.elapsed();
    assert!(back == msg, "sliced message altered");
    // 8 slices per direction with 20 ms between consecutive ones.
    let n_slices = msg.len().div_ceil(max_bytes) as u32;
    let min = Duration::from_nanos(delay) * (n_slices - 1);
    assert!(took >= min, "{took:?} < {min:?}");
    assert!(took <= min * 2 + Duration::from_secs(2), "{took:?}");
    // The client sees the slices as separate reads (one slice per read
    // unless it fell 20 ms behind).
    assert!(reads.len() >= 2, "{reads:?}");
    eprintln!("slices of {max_bytes} B every 20 ms: reads {reads:?} in {took:?}");
}

#[test]
fn upstream_failure_closes_the_client() {
    // A port nobody listens on.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = Proxy::start(listen_any(), dead, 13).unwrap();
    let mut s = connect(&proxy);
    let _ = s.write_all(b"hello?");
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    assert!(ended(&r), "got {r:?}");
    wait_stats(&proxy, "an upstream error", |s| s.upstream_errors == 1);
}

#[test]
fn stop_closes_the_listener_and_every_connection() {
    let echo = Echo::start();
    let proxy = start(&echo, 14);
    let addr = proxy.local_addr();
    let mut s = connect(&proxy);
    assert_eq!(exchange(&mut s, b"before stop").unwrap(), b"before stop");
    let t0 = Instant::now();
    proxy.stop();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t0.elapsed()
    );
    let e = TcpStream::connect(addr).expect_err("the port still accepts after stop");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    assert!(ended(&r), "open connection after stop: got {r:?}");
}

#[test]
fn stop_closes_the_upstream_connections_it_opened() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = Proxy::start(listen_any(), upstream.local_addr().unwrap(), 18).unwrap();
    let mut client = connect(&proxy);
    client.write_all(b"hi").unwrap();
    let (mut server_side, _) = upstream.accept().unwrap();
    server_side.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 2];
    server_side.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
    wait_stats(&proxy, "one active connection", |s| s.active == 1);
    proxy.stop();
    let r = server_side.read(&mut buf);
    assert!(ended(&r), "upstream side after stop: got {r:?}");
    let r = client.read(&mut buf);
    assert!(ended(&r), "client side after stop: got {r:?}");
}

#[test]
fn drop_stops_too() {
    let echo = Echo::start();
    let proxy = start(&echo, 15);
    let addr = proxy.local_addr();
    let mut s = connect(&proxy);
    assert_eq!(exchange(&mut s, b"x").unwrap(), b"x");
    drop(proxy);
    assert!(TcpStream::connect(addr).is_err());
    let mut buf = [0u8; 4];
    assert!(ended(&s.read(&mut buf)));
}

#[test]
fn take_window_reports_each_tick_separately() {
    let echo = Echo::start();
    let proxy = start(&echo, 16);
    let mut s = connect(&proxy);
    assert_eq!(exchange(&mut s, b"first").unwrap(), b"first");
    wait_stats(&proxy, "the first exchange", |s| {
        s.target_to_client.bytes == 5
    });
    let w1 = proxy.take_window();
    assert_eq!(w1.target_to_client.bytes, 5);
    assert_eq!(w1.active, 1);
    assert_eq!(exchange(&mut s, b"second!").unwrap(), b"second!");
    wait_stats(&proxy, "the second exchange", |s| {
        s.target_to_client.bytes == 12
    });
    let w2 = proxy.take_window();
    assert_eq!(w2.target_to_client.bytes, 7);
    assert_eq!(w2.accepted, 0);
    assert!(w2.window_ns > 0);
}

/// Measurement, not a check: `cargo test -p cargo-panic --test proxy --release
/// -- --ignored --nocapture throughput`.
#[test]
#[ignore = "measurement: run by hand"]
fn throughput_64_mib_no_faults() {
    let echo = Echo::start();
    let proxy = start(&echo, 17);
    let s = connect(&proxy);
    let data = pattern(64 << 20);
    let (back, took) = echo_all(&s, &data);
    assert!(back == data);
    // The same transfer straight to the echo server, for comparison.
    let direct = TcpStream::connect(echo.addr).unwrap();
    let (back, direct_took) = echo_all(&direct, &data);
    assert!(back == data);
    let st = proxy.stats();
    eprintln!(
        "64 MiB echoed: through the proxy {took:?} ({:.0} MiB/s each way, {} chunks back, mean proxy delay {} ns); direct {direct_took:?} ({:.0} MiB/s)",
        64.0 / took.as_secs_f64(),
        st.target_to_client.chunks,
        st.target_to_client.delay.mean_achieved_ns(),
        64.0 / direct_took.as_secs_f64(),
    );
}

#[test]
fn set_upstream_moves_the_connections_accepted_afterwards() {
    let (first, second) = (Echo::start(), Echo::start());
    let proxy = start(&first, 1);
    let mut before = connect(&proxy);
    assert_eq!(exchange(&mut before, b"one").unwrap(), b"one");
    // Connections accepted after the move reach the second server; the one
    // opened before keeps its upstream. With the first server gone, new
    // connections still work.
    proxy.set_upstream(second.addr).unwrap();
    assert_eq!(proxy.upstream(), second.addr);
    let mut after = connect(&proxy);
    assert_eq!(exchange(&mut after, b"two").unwrap(), b"two");
    assert_eq!(exchange(&mut before, b"three").unwrap(), b"three");
    drop(first);
    let mut later = connect(&proxy);
    assert_eq!(exchange(&mut later, b"four").unwrap(), b"four");
    let s = proxy.stats();
    assert_eq!(s.upstream_errors, 0, "{s:#?}");
    // Only loopback addresses.
    let err = proxy
        .set_upstream("10.0.0.1:80".parse().unwrap())
        .unwrap_err();
    assert!(format!("{err}").contains("is not loopback"), "{err}");
    assert_eq!(proxy.upstream(), second.addr);
}
