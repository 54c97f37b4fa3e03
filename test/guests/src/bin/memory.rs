//! `memory MiB`: allocates and touches MiB mebibytes, one MiB at a time, printing
//! `allocated N MiB` after each step and `done N MiB` at the end. An allocation that fails
//! is refused: `denied: allocation of MiB N failed: ...`, exit 3.

const MIB: usize = 1 << 20;

fn main() {
    let total: usize = warden_guests::parsed_arg(1, "MiB");
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(total);
    for i in 1..=total {
        let mut block = Vec::new();
        if let Err(e) = block.try_reserve_exact(MIB) {
            warden_guests::deny(format!("allocation of MiB {i} failed: {e}"));
        }
        // Write every byte so that the memory is really used, not just reserved.
        block.resize(MIB, (i % 251) as u8 + 1);
        blocks.push(std::hint::black_box(block));
        println!("allocated {i} MiB");
    }
    std::hint::black_box(&blocks);
    println!("done {total} MiB");
}
