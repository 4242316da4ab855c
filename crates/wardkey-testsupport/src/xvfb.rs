//! A real X server (Xvfb) for the lock screen: started on a free display,
//! driven with synthetic input (the XTEST extension, as a person's mouse,
//! touch screen and keyboard arrive) and photographed (the root window as
//! PNG), then stopped when the handle drops.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _, ImageFormat};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// Screen size: a common ward PC and 10-inch touch panel resolution.
pub const WIDTH: u16 = 1280;
/// Screen height.
pub const HEIGHT: u16 = 800;

/// A running Xvfb and a connection to it.
pub struct Xvfb {
    child: Child,
    display: String,
    conn: RustConnection,
    root: xproto::Window,
}

impl Xvfb {
    /// Start Xvfb at 1280×800×24 on the first free display from :90.
    pub fn start() -> Self {
        for n in 90..190 {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() || Path::new(&format!("/tmp/.X{n}-lock")).exists() {
                continue;
            }
            let display = format!(":{n}");
            let child = Command::new("Xvfb")
                .args([&display, "-screen", "0", &format!("{WIDTH}x{HEIGHT}x24"), "-nolisten", "tcp", "-noreset"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| missing_xvfb(e));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok((conn, screen)) = x11rb::connect(Some(&display)) {
                    let root = conn.setup().roots[screen].root;
                    return Self { child, display, conn, root };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no free X display between :90 and :189, or Xvfb did not start");
    }

    /// The `DISPLAY` value for programs that should draw here.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The screen as a PNG at `path`.
    pub fn screenshot(&self, path: &Path) {
        let image = self
            .conn
            .get_image(ImageFormat::Z_PIXMAP, self.root, 0, 0, WIDTH, HEIGHT, !0)
            .expect("send GetImage")
            .reply()
            .expect("GetImage");
        // 24-bit depth comes as 32-bit little-endian BGRX.
        let mut rgb = Vec::with_capacity(usize::from(WIDTH) * usize::from(HEIGHT) * 3);
        for px in image.data.chunks_exact(4) {
            rgb.extend_from_slice(&[px[2], px[1], px[0]]);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("make the screenshot directory");
        }
        let file = std::fs::File::create(path).expect("create the screenshot");
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), u32::from(WIDTH), u32::from(HEIGHT));
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header().and_then(|mut w| w.write_image_data(&rgb)).expect("write the screenshot");
    }

    /// The colour (RGB) of the pixel at `x`, `y`.
    pub fn pixel(&self, x: i16, y: i16) -> [u8; 3] {
        let image = self
            .conn
            .get_image(ImageFormat::Z_PIXMAP, self.root, x, y, 1, 1, !0)
            .expect("send GetImage")
            .reply()
            .expect("GetImage");
        [image.data[2], image.data[1], image.data[0]]
    }

    /// A left click (or touch) at `x`, `y`.
    pub fn click(&self, x: i16, y: i16) {
        let c = &self.conn;
        c.xtest_fake_input(xproto::MOTION_NOTIFY_EVENT, 0, 0, self.root, x, y, 0).expect("move");
        c.xtest_fake_input(xproto::BUTTON_PRESS_EVENT, 1, 0, self.root, 0, 0, 0).expect("press");
        c.xtest_fake_input(xproto::BUTTON_RELEASE_EVENT, 1, 0, self.root, 0, 0, 0).expect("release");
        c.sync().expect("sync");
    }

    /// Press and release the key that types `keysym` (e.g. `0x31` for "1",
    /// `0xff0d` for Return).
    pub fn key(&self, keysym: u32) {
        let c = &self.conn;
        let setup = c.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let map = c.get_keyboard_mapping(min, max - min + 1).expect("send").reply().expect("keyboard map");
        let per = usize::from(map.keysyms_per_keycode);
        let code = map
            .keysyms
            .chunks(per.max(1))
            .position(|syms| syms.first() == Some(&keysym))
            .map(|i| min + i as u8)
            .unwrap_or_else(|| panic!("no key types keysym {keysym:#x} on this X server"));
        c.xtest_fake_input(xproto::KEY_PRESS_EVENT, code, 0, self.root, 0, 0, 0).expect("press");
        c.xtest_fake_input(xproto::KEY_RELEASE_EVENT, code, 0, self.root, 0, 0, 0).expect("release");
        c.sync().expect("sync");
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Panic with instructions when Xvfb cannot be started: a lock screen test
/// must fail, never pass by skipping.
fn missing_xvfb(error: std::io::Error) -> ! {
    crate::missing_program("Xvfb", "xvfb", error)
}
