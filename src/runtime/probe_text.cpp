// The accuracy probe's built-in calibration text (runtime/accuracy_probe.h).
// Written for kestrel: narrative, explanation, dialogue, lists and numbers, so
// the next-token distributions it probes are varied; no WikiText, which
// perplexity is measured on.
#include "runtime/accuracy_probe.h"

namespace kestrel {

std::string_view probe_calibration_text() {
  return R"(The lighthouse on the northern point had been dark for eleven years when Marta Ilves bought it at auction for less than the price of a used car. The roof leaked, the iron stairs had rusted through in three places, and the keeper's cottage smelled of salt and old paint. Her brother told her it was the worst decision she had ever made. She told him that was a high bar, and started making lists.

The first list was about water. Rain came from the west nine months of the year, so she cleared the gutters, patched the cistern with a lime mortar she mixed by hand, and fitted a simple filter of sand, gravel and charcoal. By the end of October the tank held almost four thousand litres, enough for a person who was careful and a little stubborn.

The second list was about light. A lens of that size, the surveyor explained, concentrates a small flame into a beam that can be seen twenty nautical miles away. "The trick is not the brightness," he said, tapping the brass frame. "It is the rotation. Every light on this coast has its own rhythm, two flashes here, three there, so a sailor can tell where he is by counting." Marta wrote the numbers down: one flash every five seconds, a period she would later hear in her sleep.

How does a rotating lens keep its timing without electricity? The old answer was clockwork. A weight hangs from a cable wound around a drum; as it falls, it turns a train of gears, and a governor with spinning arms keeps the speed steady. Someone had to climb the tower every four hours to wind it back up. The logbooks from 1931 record the keeper's name, the weather, the time of each winding, and, on one page, a drawing of a seal that had slept on the landing all afternoon.

Restoring the mechanism took most of the winter. She cleaned each gear in paraffin, replaced two worn bearings with parts copied by a machinist in town, and learned that the governor had to be balanced to within a fraction of a gram. When she finally released the brake, the lens turned once, hesitated, and then settled into its slow, patient sweep.

In spring the coast guard sent a letter. The light could not be used for navigation, they wrote, since modern ships relied on satellite positioning and the nearby channel had been marked with buoys for decades. However, they saw no objection to it being lit on holidays, provided the rhythm differed from every active light in the region. Marta chose four short flashes followed by a long dark interval, a pattern she described to her brother as "a question asked politely."

Visitors began to arrive in the summer. A school brought thirty children who counted the steps aloud, one hundred and twelve of them, and argued about whether the top landing should count. A retired engineer spent an afternoon explaining how the focal length of a lens depends on the curvature of its surfaces and the refractive index of the glass. An old woman from the village said nothing at all, climbed to the gallery, looked out at the water for a long time, and then thanked Marta for bringing the light back.

In the third winter a storm took the anemometer off the gallery and carried it, as far as anyone could tell, to Norway. Marta wrote to the weather service to ask whether they wanted the readings she had kept, and was surprised when a woman named Dr. Okafor called back within the week. The service had lost its own station on the point in 2009; a daily record from the same spot, even a homemade one, was worth having. "Three things," Dr. Okafor said. "Read the barometer at the same hour every day, write down the wind before you write down anything else, and never correct an old number. If you made a mistake, add a note beside it."

So the fourth list was about weather, and it grew into a notebook with columns: date, time, pressure in hectopascals, wind direction in degrees, wind speed in knots, cloud, sea state, remarks. On the fourteenth of February the pressure fell from 1012 to 968 in nineteen hours, the fastest drop she had recorded, and the remark column simply said "doors tied shut". On the fifteenth it read "calm, gulls back, one slate missing".

People began to visit. A retired engineer explained how the clockwork worked: a weight of about ninety kilograms hung in the hollow centre of the tower, and as it fell, a train of gears turned the lens once every thirty seconds. Winding it took forty turns of the crank and lasted a little under five hours, which meant that someone had once climbed those stairs three times a night, every night, for decades. A group of schoolchildren asked whether the light was lonely. Marta said no, it had the boats, and the boats had it, and that was more company than most people managed.

Not everything went well. The generator she bought second-hand failed in its first January, the solar panels produced almost nothing between November and February, and the insurance company refused to say whether a lighthouse counted as a house. She kept a fifth list, shorter than the others, of problems she had decided not to solve: the crooked chimney, the neighbour's goat, the question of what she would do when she could no longer climb the stairs.

By the second year the cottage had a new roof, the stairs were safe, and the cistern had never run dry. The lists continued, though they had changed: paint for the gallery railing, a better latch for the storm door, seeds for a garden behind the wall where the wind could not reach. Each evening at dusk she climbed the tower, wound the weight, and watched the first beam cross the bay. Some nights a fishing boat answered with a blink of its deck lights, and she liked to think that the message was understood, even if neither side could have said exactly what it was.
)";
}

}  // namespace kestrel
